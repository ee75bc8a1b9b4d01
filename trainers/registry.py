"""The trainer registry: built-in trainers plus the ``gentune.trainers`` entry-point group.

A trainer is found by looking its name up in this registry, never by importing a module a
request names. Plugins declare ``[project.entry-points."gentune.trainers"] name = "pkg.mod:Cls"``.

Trainers load when first asked for: a Ray worker that runs a gan2d trial imports gan2d, not
the image trainers and their metric libraries (about a second of start-up each time a
study's first trial starts).
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from gentune.trainers.base import Trainer

ENTRY_POINT_GROUP = "gentune.trainers"
BUILTIN_TRAINERS: dict[str, str] = {
    "gan2d": "gentune.trainers.gan2d:Gan2DTrainer",
    "dcgan": "gentune.trainers.dcgan:DCGANTrainer",
    "vae": "gentune.trainers.vae:VAETrainer",
    "ddpm": "gentune.trainers.ddpm:DDPMTrainer",
}
"""Built-in trainers by name: the module and class of each, fixed here (not user input)."""

log = logging.getLogger(__name__)


@cache
def trainer_class(name: str) -> type[Trainer] | None:
    """The class registered as ``name``, loaded now if it was not; None if none is. A
    built-in wins a name clash with a plugin."""
    if name in BUILTIN_TRAINERS:
        module, _, attribute = BUILTIN_TRAINERS[name].partition(":")
        cls: type[Trainer] = getattr(importlib.import_module(module), attribute)
        return cls
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        return _load_plugin(ep)
    return None


def _load_plugin(ep: EntryPoint) -> type[Trainer] | None:
    try:
        cls = ep.load()
    except Exception:  # a broken plugin must not take the service down
        log.exception("plugin trainer %r failed to load", ep.name)
        return None
    if isinstance(cls, type) and issubclass(cls, Trainer):
        return cls
    log.warning("plugin trainer %r is not a Trainer subclass; ignored", ep.name)
    return None


@cache
def trainer_classes() -> dict[str, type[Trainer]]:
    """Every registered trainer class by name (each loaded), sorted by name."""
    names = set(BUILTIN_TRAINERS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN_TRAINERS:
            log.warning("plugin trainer %r ignored: the name belongs to a built-in", ep.name)
        names.add(ep.name)
    found = {name: trainer_class(name) for name in sorted(names)}
    return {name: cls for name, cls in found.items() if cls is not None}


def reload_trainers() -> None:
    """Forget what was found, so plugins installed since are seen (tests, a running shell)."""
    trainer_class.cache_clear()
    trainer_classes.cache_clear()


def trainer_names() -> list[str]:
    return list(trainer_classes())


def get_trainer(name: str) -> Trainer | None:
    """A fresh instance of the trainer registered as ``name``, or None."""
    cls = trainer_class(name)
    return cls() if cls is not None else None
