"""The trainer registry: built-in trainers plus the ``gentune.trainers`` entry-point group.

A trainer is found by looking its name up in this registry, never by importing a module a
request names. Plugins declare ``[project.entry-points."gentune.trainers"] name = "pkg.mod:Cls"``.
"""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import entry_points

from gentune.trainers.base import Trainer
from gentune.trainers.dcgan import DCGANTrainer
from gentune.trainers.ddpm import DDPMTrainer
from gentune.trainers.gan2d import Gan2DTrainer
from gentune.trainers.vae import VAETrainer

ENTRY_POINT_GROUP = "gentune.trainers"
BUILTIN_TRAINERS: dict[str, type[Trainer]] = {
    trainer.name: trainer for trainer in (Gan2DTrainer, DCGANTrainer, VAETrainer, DDPMTrainer)
}

log = logging.getLogger(__name__)


@cache
def trainer_classes() -> dict[str, type[Trainer]]:
    """Every registered trainer class by name; built-ins win a name clash with a plugin."""
    found: dict[str, type[Trainer]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN_TRAINERS:
            log.warning("plugin trainer %r ignored: the name belongs to a built-in", ep.name)
            continue
        try:
            cls = ep.load()
        except Exception:  # a broken plugin must not take the service down
            log.exception("plugin trainer %r failed to load", ep.name)
            continue
        if isinstance(cls, type) and issubclass(cls, Trainer):
            found[ep.name] = cls
        else:
            log.warning("plugin trainer %r is not a Trainer subclass; ignored", ep.name)
    found.update(BUILTIN_TRAINERS)
    return dict(sorted(found.items()))


def trainer_names() -> list[str]:
    return list(trainer_classes())


def get_trainer(name: str) -> Trainer | None:
    """A fresh instance of the trainer registered as ``name``, or None."""
    cls = trainer_classes().get(name)
    return cls() if cls is not None else None
