"""The trainer contract: what every trainer, built-in or plugin, provides and receives."""

from __future__ import annotations

import abc
import contextlib
import io
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar, Literal, Protocol

import numpy as np
import torch
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from gentune.trainers.augment import AugmentPolicy
from gentune.trainers.data import (
    LABELLED_DATASETS,
    ImageData,
    ImageDatasetName,
    data_root,
    load_image_dataset,
    resolve_data_dir,
)

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

    def describe_run(self, info: Mapping[str, str]) -> None:
        """Facts about this run that are not metrics, kept with the trial: the dataset and its
        fingerprint, the device. Call it once, before the first report."""


@dataclass(frozen=True)
class MetricSpec:
    """A metric a trainer reports, with the direction in which it gets better."""

    description: str
    direction: Literal["minimize", "maximize"] | None = None
    timing: bool = False
    """A wall-clock measurement: it varies from run to run even with the same seed."""
    worst: float | None = None
    """The worst value the metric can take (0 for a share of good samples), where a run that
    learns nothing sits; None when there is no such bound (FID)."""


class InitFrom(BaseModel):
    """Fine-tuning: start from an earlier trial's weights instead of random ones."""

    model_config = {"extra": "forbid"}

    trial: int = Field(ge=1, le=2**31 - 1, description="The earlier trial's id.")
    kind: Literal["best", "last"] = Field("best", description="Which of its checkpoints.")
    checkpoint: str | None = Field(
        None,
        max_length=1000,
        description="Set by the service at submit: the checkpoint's path in the artifact "
        "store (the trial's worker resolves it).",
    )


class TrainerParams(BaseModel):
    """Base for a trainer's param model: unknown names are errors, never ignored."""

    model_config = {"extra": "forbid"}

    seed: int = 0
    init_from: InitFrom | None = Field(
        None,
        description="Fine-tune: start from trial N's checkpoint ({trial: N}); the trainer must "
        "support it and the params that shape its networks must match that trial's.",
    )


def initial_weights(params: TrainerParams, device: torch.device) -> Checkpoint | None:
    """The checkpoint ``init_from`` names, loaded on ``device``; None without one."""
    if params.init_from is None:
        return None
    if params.init_from.checkpoint is None:
        raise ValueError(
            f"init_from names trial {params.init_from.trial} but no checkpoint file: the "
            "service sets it when the study is submitted"
        )
    return load_checkpoint(params.init_from.checkpoint, device)


def restore_weights(
    params: TrainerParams, device: torch.device, **networks: torch.nn.Module
) -> None:
    """Fine-tuning: load each of ``networks`` from the entry of its name in the checkpoint
    ``init_from`` names (``model=g, discriminator=d``); nothing without ``init_from``."""
    start = initial_weights(params, device)
    if start is not None:
        for key, network in networks.items():
            network.load_state_dict(start[key])


class UnsafeCheckpoint(ValueError):
    """A checkpoint holding objects that only running code could rebuild."""


def load_checkpoint(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    device: torch.device | str = "cpu",
    trusted: Sequence[Any] = (),
) -> Checkpoint:
    """Read a checkpoint without running code from it: torch's weights-only unpickler, which
    rebuilds tensors, containers and plain values, plus the classes in ``trusted`` (a
    trainer's ``checkpoint_globals``). Anything else raises ``UnsafeCheckpoint`` naming it."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with torch.serialization.safe_globals(list(trusted)):
            loaded: Checkpoint = torch.load(handle, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeCheckpoint(
            "the checkpoint holds objects that only running code from it could rebuild, and "
            f"gentune loads checkpoints without running code ({first}); a trainer whose "
            "checkpoints need more lists the classes in its checkpoint_globals"
        ) from exc
    return loaded


class ImageTrainerParams(TrainerParams):
    """What every image trainer takes: the data, its augmentation, how samples are scored."""

    dataset: ImageDatasetName = Field(
        "digits",
        description="Training images: digits (ships with scikit-learn); mnist, fashion_mnist, "
        "kmnist or cifar10 kept on disk in torchvision's layout; or image_folder.",
    )
    data_dir: str | None = Field(
        None,
        max_length=500,
        validate_default=True,
        description="Folder under the data root (GENTUNE_DATA_DIR): torchvision's root for "
        "mnist-like and cifar10 data (default: the data root), the images for image_folder.",
    )
    channels: Literal[1, 3] | None = Field(
        None, description="Convert to 1 (grey) or 3 (RGB) channels; default: the data's own."
    )
    image_size: Literal[16, 32, 64] = Field(16, description="Side images are resized to.")
    features: Literal["auto", "domain", "random", "inception"] = Field(
        "auto",
        description="Feature extractor for FID/KID/PRDC; auto: domain for labelled datasets, "
        "random for image_folder.",
    )
    eval_samples: int = Field(1000, ge=50, le=50_000, description="Images scored per evaluation.")
    augment_flip: bool = Field(False, description="Random left-right flips of training images.")
    augment_translation: float = Field(
        0.0, ge=0.0, le=0.5, description="Random shifts of up to this fraction of the side."
    )
    amp: bool = Field(True, description="bfloat16 autocast on CUDA (ignored on CPU).")

    @field_validator("data_dir")
    @classmethod
    def _check_data_dir(cls, data_dir: str | None, info: ValidationInfo) -> str | None:
        dataset = info.data.get("dataset")
        if data_dir is None:
            if dataset == "image_folder":
                raise ValueError("image_folder needs data_dir: a folder under the data root")
            return None
        if dataset == "digits":
            raise ValueError("digits ships with scikit-learn and takes no data_dir")
        path = resolve_data_dir(data_dir)
        if not path.is_dir():
            raise ValueError(f"no folder {data_dir!r} under the data root {data_root()}")
        return data_dir

    @field_validator("features")
    @classmethod
    def _check_features(cls, features: str, info: ValidationInfo) -> str:
        dataset = info.data.get("dataset")
        if features == "domain" and dataset is not None and dataset not in LABELLED_DATASETS:
            raise ValueError(
                f"the domain extractor is a classifier trained on labels, and {dataset} has "
                "none; use random or inception"
            )
        return features

    @property
    def feature_extractor(self) -> str:
        """The extractor ``features`` names, with ``auto`` resolved for the dataset."""
        if self.features != "auto":
            return self.features
        return "domain" if self.dataset in LABELLED_DATASETS else "random"

    @property
    def augmentation(self) -> AugmentPolicy:
        """The augmentations of training images (a GAN trainer adds its own)."""
        return AugmentPolicy(flip=self.augment_flip, translation=self.augment_translation)

    def image_data(self) -> ImageData:
        return load_image_dataset(self.dataset, self.image_size, self.data_dir, self.channels)


class Trainer(abc.ABC):
    """A generative-model trainer.

    Subclasses set ``name``, ``Params`` and ``metrics`` and implement ``train`` and
    ``sample``; the registry hands instances to the service.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[TrainerParams]]
    metrics: ClassVar[Mapping[str, MetricSpec]]
    stability_defaults: ClassVar[Sequence[Mapping[str, Any]]] = ()
    """Stability rules a study of this trainer gets unless it says otherwise, as plain data in
    the study definition's form (``{"type": "divergence", "metrics": ["loss"]}``). Every
    trainer also gets ``non_finite``."""
    architecture: ClassVar[tuple[str, ...]] = ()
    """Params that shape the networks: a study may fine-tune (``init_from``) a trial's
    checkpoint only where these match it. Empty: the trainer cannot start from a checkpoint."""
    pruner_defaults: ClassVar[Mapping[str, Any] | None] = None
    """The pruner a study of this trainer gets when its definition names none, in the study
    definition's form; None: the median pruner with Optuna's defaults."""
    sampler_defaults: ClassVar[Mapping[str, Any] | None] = None
    """The sampler a study of this trainer gets when its definition names none, in the study
    definition's form; None: gentune's default sampler (see ``StudySpec.sampler``)."""
    checkpoint_globals: ClassVar[Sequence[Any]] = ()
    """Classes beyond tensors, containers and plain values that this trainer's checkpoints
    hold: checkpoints are loaded with torch's weights-only unpickler, which rebuilds only
    those (see ``load_checkpoint``)."""

    def parse_params(self, raw: Mapping[str, Any]) -> TrainerParams:
        """Validate raw params against this trainer's param model."""
        return self.Params.model_validate(dict(raw))

    def reported_metrics(self, params: TrainerParams) -> Mapping[str, MetricSpec]:
        """The metrics a run with ``params`` gives values for (default: all of ``metrics``)."""
        return self.metrics

    def evaluations(self, params: TrainerParams) -> int | None:
        """The step of a run's last evaluation with ``params``, if known: by default its
        ``epochs`` param, for a trainer that evaluates once per epoch (every built-in one)."""
        epochs = getattr(params, "epochs", None)
        return epochs if isinstance(epochs, int) and epochs > 0 else None

    @abc.abstractmethod
    def train(self, params: TrainerParams, device: torch.device, reporter: Reporter) -> None:
        """Train with ``params``, calling ``reporter.report`` after every evaluation."""

    @abc.abstractmethod
    def sample(
        self, checkpoint: Checkpoint, n: int, device: torch.device, seed: int = 0
    ) -> np.ndarray:
        """Draw ``n`` samples from the generator held in ``checkpoint``."""


def params_millions(network: torch.nn.Module) -> float:
    """A network's parameter count in millions (the ``params_millions`` metric)."""
    return sum(p.numel() for p in network.parameters()) / 1e6


PARAMS_MILLIONS = MetricSpec(
    "Parameters of the network that draws samples (generator, decoder, denoiser), in "
    "millions: a size to bound with a constraint.",
    "minimize",
)

CLASS_METRICS = ("is", "class_kl")
"""Image metrics read from the domain classifier's classes."""


class ImageTrainer(Trainer):
    """A trainer of image generators: it takes ``ImageTrainerParams`` and reports the image
    metrics; ``is`` and ``class_kl`` need the domain classifier's classes and are NaN with
    other features."""

    def reported_metrics(self, params: TrainerParams) -> Mapping[str, MetricSpec]:
        assert isinstance(params, ImageTrainerParams)
        if params.feature_extractor == "domain":
            return self.metrics
        return {name: spec for name, spec in self.metrics.items() if name not in CLASS_METRICS}


def mixed_precision(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast on CUDA when ``enabled``; a no-op on CPU (AMP brings nothing there)."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def pick_device(prefer_cuda: bool = True) -> torch.device:
    """CUDA when a GPU is visible (and wanted), else CPU."""
    return torch.device("cuda" if prefer_cuda and torch.cuda.is_available() else "cpu")
