"""The trainer contract: what every trainer, built-in or plugin, provides and receives."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch
from pydantic import BaseModel, Field

Checkpoint = dict[str, Any]
"""A checkpoint is a plain dict: ``model``, ``optimizer`` state, ``config``, ``step`` and so on."""


class Reporter(Protocol):
    """Where a trainer sends its evaluations; the service decides what happens next."""

    def report(
        self,
        step: int,
        metrics: Mapping[str, float],
        checkpoint: Callable[[], Checkpoint] | None = None,
        samples: Callable[[], np.ndarray] | None = None,
    ) -> None:
        """Record the metrics of evaluation ``step``.

        ``checkpoint`` builds the trainer's state on demand; the reporter calls it only
        when it wants to keep this step (as the last or the best checkpoint). ``samples``
        gives some of the images just generated, (N, C, H, W) in [-1, 1], for a picture.
        """

    def should_stop(self) -> bool:
        """True once the trial should end (pruned, cancelled); the trainer returns early."""


@dataclass(frozen=True)
class MetricSpec:
    """A metric a trainer reports, with the direction in which it gets better."""

    description: str
    direction: Literal["minimize", "maximize"] | None = None
    timing: bool = False
    """A wall-clock measurement: it varies from run to run even with the same seed."""


class TrainerParams(BaseModel):
    """Base for a trainer's param model: unknown names are errors, never ignored."""

    model_config = {"extra": "forbid"}

    seed: int = 0


class ImageTrainerParams(TrainerParams):
    """What every image trainer takes: the data, how its samples are scored, mixed precision."""

    dataset: Literal["digits"] = Field("digits", description="Training images.")
    image_size: Literal[16, 32] = Field(16, description="Side of the (upsampled) images.")
    features: Literal["domain", "random", "inception"] = Field(
        "domain", description="Feature extractor for FID/KID/PRDC of generated images."
    )
    eval_samples: int = Field(1000, ge=50, le=50_000, description="Images scored per evaluation.")
    amp: bool = Field(True, description="bfloat16 autocast on CUDA (ignored on CPU).")


class Trainer(abc.ABC):
    """A generative-model trainer.

    Subclasses set ``name``, ``Params`` and ``metrics`` and implement ``train`` and
    ``sample``; the registry hands instances to the service.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[TrainerParams]]
    metrics: ClassVar[Mapping[str, MetricSpec]]

    def parse_params(self, raw: Mapping[str, Any]) -> TrainerParams:
        """Validate raw params against this trainer's param model."""
        return self.Params.model_validate(dict(raw))

    @abc.abstractmethod
    def train(self, params: TrainerParams, device: torch.device, reporter: Reporter) -> None:
        """Train with ``params``, calling ``reporter.report`` after every evaluation."""

    @abc.abstractmethod
    def sample(
        self, checkpoint: Checkpoint, n: int, device: torch.device, seed: int = 0
    ) -> np.ndarray:
        """Draw ``n`` samples from the generator held in ``checkpoint``."""


def mixed_precision(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast on CUDA when ``enabled``; a no-op on CPU (AMP brings nothing there)."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def pick_device(prefer_cuda: bool = True) -> torch.device:
    """CUDA when a GPU is visible (and wanted), else CPU."""
    return torch.device("cuda" if prefer_cuda and torch.cuda.is_available() else "cpu")
