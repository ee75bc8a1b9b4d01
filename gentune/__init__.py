"""gentune: hyperparameter optimization for generative models.

What a trainer plugin or a notebook imports comes from here, and only from here::

    import gentune

    class MyTrainer(gentune.ImageTrainer): ...

The API client (``Client``, ``ApiError``); the trainer interface (``Trainer``,
``TrainerParams``, ``Reporter``, ``MetricSpec``, ``Checkpoint``); the image trainers' run,
params, data and metrics (``start_image_run``, ``ImageRun``); an image model that trains on
one loss, its loop written for it (``ImageModel``, ``ImageModelTrainer``); and what every
training loop shares (``EpochMeter``, ``shuffled_batches``, ``batched``, ``report_epoch``,
``report_images``; ``GanParams``, ``GanPair`` and ``gan_step`` for GANs). Everything else
(``gentune.service``, ``gentune.trainers``) is the implementation and may change between
versions. Names load on first use, so ``import gentune`` (and the ``gentune`` command) does
not import torch until one is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gentune.service.client import ApiError as ApiError
    from gentune.service.client import Client as Client
    from gentune.service.client import ServiceUnreachable as ServiceUnreachable
    from gentune.trainers.base import Checkpoint as Checkpoint
    from gentune.trainers.base import ImageTrainer as ImageTrainer
    from gentune.trainers.base import ImageTrainerParams as ImageTrainerParams
    from gentune.trainers.base import MetricSpec as MetricSpec
    from gentune.trainers.base import Reporter as Reporter
    from gentune.trainers.base import Trainer as Trainer
    from gentune.trainers.base import TrainerParams as TrainerParams
    from gentune.trainers.base import initial_weights as initial_weights
    from gentune.trainers.base import load_checkpoint as load_checkpoint
    from gentune.trainers.base import mixed_precision as mixed_precision
    from gentune.trainers.base import params_millions as params_millions
    from gentune.trainers.base import restore_weights as restore_weights
    from gentune.trainers.gan_losses import GAN_METRIC_SPECS as GAN_METRIC_SPECS
    from gentune.trainers.gan_losses import GanPair as GanPair
    from gentune.trainers.gan_losses import GanParams as GanParams
    from gentune.trainers.gan_losses import adam_pair as adam_pair
    from gentune.trainers.gan_losses import ema_of as ema_of
    from gentune.trainers.gan_losses import gan_step as gan_step
    from gentune.trainers.image_model import ImageModel as ImageModel
    from gentune.trainers.image_model import ImageModelParams as ImageModelParams
    from gentune.trainers.image_model import ImageModelTrainer as ImageModelTrainer
    from gentune.trainers.loop import EpochMeter as EpochMeter
    from gentune.trainers.loop import batched as batched
    from gentune.trainers.loop import report_epoch as report_epoch
    from gentune.trainers.loop import report_images as report_images
    from gentune.trainers.loop import save_atomically as save_atomically
    from gentune.trainers.loop import shuffled_batches as shuffled_batches
    from gentune.trainers.metrics.evaluator import IMAGE_METRIC_SPECS as IMAGE_METRIC_SPECS
    from gentune.trainers.metrics.evaluator import IMAGE_PRUNER_DEFAULTS as IMAGE_PRUNER_DEFAULTS
    from gentune.trainers.metrics.evaluator import IMAGE_TRAINER_METRICS as IMAGE_TRAINER_METRICS
    from gentune.trainers.metrics.evaluator import MODE_COLLAPSE_RULE as MODE_COLLAPSE_RULE
    from gentune.trainers.metrics.evaluator import OPTIMIZER_METRIC_SPECS as OPTIMIZER_METRIC_SPECS
    from gentune.trainers.metrics.evaluator import SAMPLING_METRIC_SPECS as SAMPLING_METRIC_SPECS
    from gentune.trainers.metrics.evaluator import ImageRun as ImageRun
    from gentune.trainers.metrics.evaluator import one_network_rules as one_network_rules
    from gentune.trainers.metrics.evaluator import start_image_run as start_image_run

__version__ = "0.1.0"

_PUBLIC: dict[str, tuple[str, ...]] = {
    "gentune.service.client": ("ApiError", "Client", "ServiceUnreachable"),
    "gentune.trainers.base": (
        "Checkpoint",
        "ImageTrainer",
        "ImageTrainerParams",
        "MetricSpec",
        "Reporter",
        "Trainer",
        "TrainerParams",
        "initial_weights",
        "load_checkpoint",
        "mixed_precision",
        "params_millions",
        "restore_weights",
    ),
    "gentune.trainers.gan_losses": (
        "GAN_METRIC_SPECS",
        "GanParams",
        "GanPair",
        "adam_pair",
        "ema_of",
        "gan_step",
    ),
    "gentune.trainers.image_model": ("ImageModel", "ImageModelParams", "ImageModelTrainer"),
    "gentune.trainers.loop": (
        "EpochMeter",
        "batched",
        "report_epoch",
        "report_images",
        "save_atomically",
        "shuffled_batches",
    ),
    "gentune.trainers.metrics.evaluator": (
        "IMAGE_METRIC_SPECS",
        "IMAGE_PRUNER_DEFAULTS",
        "IMAGE_TRAINER_METRICS",
        "MODE_COLLAPSE_RULE",
        "OPTIMIZER_METRIC_SPECS",
        "SAMPLING_METRIC_SPECS",
        "ImageRun",
        "one_network_rules",
        "start_image_run",
    ),
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'gentune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])
