"""gentune: hyperparameter optimization for generative models.

What a trainer plugin or a notebook imports comes from here, and only from here::

    from gentune import ImageTrainer, ImageTrainerParams, MetricSpec, Reporter

Everything else (``gentune.service``, ``gentune.trainers``) is the implementation and may
change between versions. Names load on first use, so ``import gentune`` (and the ``gentune``
command) does not import torch until a trainer name is asked for.
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
    )
    from gentune.trainers.metrics.evaluator import IMAGE_METRIC_SPECS, start_image_run

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
    "IMAGE_METRIC_SPECS": "gentune.trainers.metrics.evaluator",
    "start_image_run": "gentune.trainers.metrics.evaluator",
}

__all__ = [
    "Checkpoint",
    "IMAGE_METRIC_SPECS",
    "ImageTrainer",
    "ImageTrainerParams",
    "MetricSpec",
    "Reporter",
    "Trainer",
    "TrainerParams",
    "initial_weights",
    "load_checkpoint",
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
