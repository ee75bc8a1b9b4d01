"""gentune: hyperparameter optimization for generative models.

What a trainer plugin or a notebook imports comes from here, and only from here::

    import gentune

    class MyTrainer(gentune.ImageTrainer): ...

The trainer interface (``Trainer``, ``TrainerParams``, ``Reporter``, ``MetricSpec``,
``Checkpoint``), the image trainers' params, data and metrics, and what every training loop
shares (``EpochMeter``, ``shuffled_batches``, ``batched``, ``report_epoch``, ``report_images``;
``GanPair`` and ``gan_step`` for GANs). Everything else (``gentune.service``,
``gentune.trainers``) is the implementation and may change between versions. Names load on
first use, so ``import gentune`` (and the ``gentune`` command) does not import torch until a
trainer name is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gentune.trainers.base import (
        Checkpoint,
        ImageTrainer,
        ImageTrainerParams,
        MetricSpec,
        Reporter,
        Trainer,
        TrainerParams,
        initial_weights,
        load_checkpoint,
        mixed_precision,
        params_millions,
    )
    from gentune.trainers.gan_losses import (
        GAN_STEP_METRICS,
        GanPair,
        adam_pair,
        ema_of,
        gan_step,
    )
    from gentune.trainers.loop import (
        EpochMeter,
        batched,
        report_epoch,
        report_images,
        save_atomically,
        shuffled_batches,
    )
    from gentune.trainers.metrics.evaluator import (
        IMAGE_METRIC_SPECS,
        SAMPLING_METRIC_SPECS,
        start_image_run,
    )

__version__ = "0.1.0"

_PUBLIC = {
    "Checkpoint": "gentune.trainers.base",
    "ImageTrainer": "gentune.trainers.base",
    "ImageTrainerParams": "gentune.trainers.base",
    "MetricSpec": "gentune.trainers.base",
    "Reporter": "gentune.trainers.base",
    "Trainer": "gentune.trainers.base",
    "TrainerParams": "gentune.trainers.base",
    "initial_weights": "gentune.trainers.base",
    "load_checkpoint": "gentune.trainers.base",
    "mixed_precision": "gentune.trainers.base",
    "params_millions": "gentune.trainers.base",
    "IMAGE_METRIC_SPECS": "gentune.trainers.metrics.evaluator",
    "SAMPLING_METRIC_SPECS": "gentune.trainers.metrics.evaluator",
    "start_image_run": "gentune.trainers.metrics.evaluator",
    "EpochMeter": "gentune.trainers.loop",
    "batched": "gentune.trainers.loop",
    "report_epoch": "gentune.trainers.loop",
    "report_images": "gentune.trainers.loop",
    "save_atomically": "gentune.trainers.loop",
    "shuffled_batches": "gentune.trainers.loop",
    "GAN_STEP_METRICS": "gentune.trainers.gan_losses",
    "GanPair": "gentune.trainers.gan_losses",
    "adam_pair": "gentune.trainers.gan_losses",
    "ema_of": "gentune.trainers.gan_losses",
    "gan_step": "gentune.trainers.gan_losses",
}

__all__ = [
    "Checkpoint",
    "EpochMeter",
    "GAN_STEP_METRICS",
    "GanPair",
    "IMAGE_METRIC_SPECS",
    "ImageTrainer",
    "ImageTrainerParams",
    "MetricSpec",
    "Reporter",
    "SAMPLING_METRIC_SPECS",
    "Trainer",
    "TrainerParams",
    "adam_pair",
    "batched",
    "ema_of",
    "gan_step",
    "initial_weights",
    "load_checkpoint",
    "mixed_precision",
    "params_millions",
    "report_epoch",
    "report_images",
    "save_atomically",
    "shuffled_batches",
    "start_image_run",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'gentune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
