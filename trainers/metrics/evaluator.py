"""ImageEvaluator: everything a trial computes on its samples at each evaluation.

Reference features of the real training images are computed once per dataset x extractor x
sample count and cached on disk; every trial (and every evaluation) reuses them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gentune.trainers.base import (
    PARAMS_MILLIONS,
    Checkpoint,
    ImageTrainerParams,
    MetricSpec,
    Reporter,
)
from gentune.trainers.data import ImageData
from gentune.trainers.loop import report_images, save_atomically, shuffled_batches
from gentune.trainers.metrics.diversity import diversity_ratio, mean_pairwise_distance
from gentune.trainers.metrics.features import (
    DomainClassifier,
    default_cache_dir,
    extractor_for,
    numerics_tag,
)
from gentune.trainers.metrics.image import ReferenceStats, class_kl, fid, inception_score, kid, prdc

IMAGE_METRIC_SPECS = {
    "fid": MetricSpec("Fréchet distance of generated to real features.", "minimize"),
    "kid": MetricSpec("Kernel (MMD^2) distance of generated to real features.", "minimize"),
    "is": MetricSpec(
        "Inception Score from the domain classifier's classes; needs features domain (or auto "
        "on a labelled dataset), NaN otherwise.",
        "maximize",
    ),
    "class_kl": MetricSpec(
        "KL divergence of the real data's class histogram from the samples' (both as the "
        "domain classifier labels them): 0 when every class is drawn as often as it is real, "
        "large when the generator drops or favours classes. Needs features domain, NaN "
        "otherwise.",
        "minimize",
    ),
    "precision": MetricSpec("Share of samples inside the real data's manifold (k=3).", "maximize"),
    "recall": MetricSpec("Share of real data inside the samples' manifold (k=3).", "maximize"),
    "density": MetricSpec("How densely samples crowd real neighbourhoods (k=5).", "maximize"),
    "coverage": MetricSpec("Share of real neighbourhoods holding a sample (k=5).", "maximize"),
    "stability/diversity": MetricSpec(
        "Mean pairwise feature distance of samples over the real data's; near 0 when the "
        "generator collapses onto a few images.",
        None,
    ),
    "seconds_per_step": MetricSpec("Wall seconds per training step.", "minimize", timing=True),
    "images_per_second": MetricSpec(
        "Real images consumed per second of training.", "maximize", timing=True
    ),
}
"""What every image trainer reports: ``evaluate``'s metrics and the training throughput."""

SAMPLING_METRIC_SPECS = {
    "sample_seconds": MetricSpec(
        "Wall seconds to draw the evaluation's eval_samples images: the sampling cost.",
        "minimize",
        timing=True,
    ),
    "params_millions": PARAMS_MILLIONS,
}
"""What the built-in image trainers also report: what drawing samples costs."""

IMAGE_TRAINER_METRICS = {**IMAGE_METRIC_SPECS, **SAMPLING_METRIC_SPECS}
"""What ``report_images`` gives every image trainer: the image metrics, throughput and the
sampling cost. A trainer adds its own (losses) beside them."""

OPTIMIZER_METRIC_SPECS = {
    "grad_norm": MetricSpec("Gradient norm, mean over the epoch.", None),
    "lr": MetricSpec("Learning rate.", None),
}
"""What a trainer of one network reports of its optimizer."""

MODE_COLLAPSE_RULE = {"type": "mode_collapse", "min_ratio": 0.03, "patience": 3}
"""Samples whose features spread less than 3% of the real data's, three evaluations running."""


def one_network_rules(loss_floor: float, max_grad_norm: float) -> tuple[dict[str, Any], ...]:
    """The stability rules of an image trainer of one network reporting ``loss`` and
    ``grad_norm``: the loss diverging (three times its best, above ``loss_floor``), the
    gradients exploding past ``max_grad_norm``, and the samples collapsing."""
    return (
        {"type": "divergence", "metrics": ["loss"], "factor": 3.0, "floor": loss_floor},
        {"type": "gradient_explosion", "metrics": ["grad_norm"], "max_norm": max_grad_norm},
        MODE_COLLAPSE_RULE,
    )


IMAGE_PRUNER_DEFAULTS = {"type": "median", "n_startup_trials": 5, "n_warmup_steps": 2}
"""The pruner of the built-in image trainers' studies: FID after one or two epochs ranks
configs poorly (slow starters catch up later)."""


@dataclass
class ImageRun:
    """One run of an image trainer: its params, data (the training images on its device), its
    evaluator, and the generator that orders its batches."""

    params: ImageTrainerParams
    data: ImageData
    evaluator: ImageEvaluator
    device: torch.device
    train: torch.Tensor
    shuffle: torch.Generator

    def batches(self, batch_size: int) -> list[torch.Tensor]:
        """One epoch's batches of indices into ``train``, in a new order every epoch."""
        return shuffled_batches(len(self.train), batch_size, self.shuffle)

    def eval_noise(self, *shape: int) -> torch.Tensor:
        """The evaluation's inputs, the same at every epoch: ``eval_samples`` draws of
        N(0, 1) of ``shape``, from a seed of their own."""
        seeded = torch.Generator().manual_seed(self.params.seed + 1)
        return torch.randn(self.params.eval_samples, *shape, generator=seeded)

    def saved(self, epoch: int, **state: Any) -> Checkpoint:
        """A checkpoint: ``state`` (networks, optimizers) and what reads it back needs."""
        return {
            **state,
            "config": self.params.model_dump(),
            "channels": self.data.channels,
            "dataset_fingerprint": self.data.fingerprint,
            "step": epoch,
        }

    def report(
        self,
        reporter: Reporter,
        epoch: int,
        metrics: dict[str, float],
        *,
        draw: Callable[[], torch.Tensor],
        size: float,
        checkpoint: Callable[[], Checkpoint],
        watched: tuple[str, ...],
    ) -> bool:
        """The end of an epoch (``report_images`` with this run's evaluator); True when
        training should end."""
        return report_images(
            reporter,
            epoch,
            metrics,
            draw=draw,
            evaluator=self.evaluator,
            size=size,
            checkpoint=checkpoint,
            watched=watched,
        )


def start_image_run(
    params: ImageTrainerParams, device: torch.device, reporter: Reporter
) -> ImageRun:
    """What an image trainer does first: load its data and tell the reporter what it is, build
    the evaluator on the trial's device, and only then seed torch (building the evaluator may
    train the domain classifier, which draws random numbers)."""
    data = params.image_data()
    reporter.describe_run(
        {
            "dataset": data.name,
            "dataset_fingerprint": data.fingerprint,
            "train_images": str(data.train.shape[0]),
            "features": params.feature_extractor,
        }
    )
    evaluator = ImageEvaluator(
        data, params.feature_extractor, n_samples=params.eval_samples, device=device
    )
    torch.manual_seed(params.seed)
    shuffle = torch.Generator().manual_seed(params.seed)
    return ImageRun(params, data, evaluator, device, data.train.to(device), shuffle)


class ImageEvaluator:
    def __init__(
        self,
        data: ImageData,
        extractor: str = "domain",
        n_samples: int = 1000,
        cache_dir: Path | None = None,
        device: torch.device | None = None,
    ) -> None:
        """``device`` runs the feature extractor (the trial's own: Inception wants a GPU)."""
        self.data = data
        self.n_samples = n_samples
        self.cache_dir = cache_dir or default_cache_dir()
        self.extractor = extractor_for(extractor, data, self.cache_dir).to(device or "cpu")
        self.reference = ReferenceStats.of(self._reference_features())
        self.real_spread = mean_pairwise_distance(self.reference.features)
        self.real_logits: torch.Tensor | None = None
        if isinstance(self.extractor, DomainClassifier):
            self.real_logits = self._class_logits(self.reference.features)

    def _reference_features(self) -> torch.Tensor:
        n = min(self.n_samples, self.data.train.shape[0])
        name = f"ref-{self.data.fingerprint}-{self.extractor.name}-{n}-{numerics_tag()}.pt"
        path = self.cache_dir / name
        if path.is_file():
            return torch.load(path, weights_only=True)
        order = torch.randperm(self.data.train.shape[0], generator=torch.Generator().manual_seed(0))
        features = self.extractor.features(self.data.train[order[:n]])
        save_atomically(features, path)
        return features

    def evaluate(self, fake: torch.Tensor) -> dict[str, float]:
        """Metrics of generated images ``fake`` (N, C, H, W) in [-1, 1] against the real data."""
        fake = fake.float().cpu()
        features = self.extractor.features(fake.clamp(-1, 1))
        scores = prdc(self.reference.features, features)
        metrics = {
            "fid": fid(self.reference, features),
            "kid": kid(self.reference.features, features),
            "precision": scores.precision,
            "recall": scores.recall,
            "density": scores.density,
            "coverage": scores.coverage,
            "stability/diversity": diversity_ratio(features, self.real_spread),
        }
        metrics["is"] = metrics["class_kl"] = math.nan  # other extractors have no classes
        if self.real_logits is not None:
            fake_logits = self._class_logits(features)
            metrics["is"] = inception_score(fake_logits)
            metrics["class_kl"] = class_kl(self.real_logits, fake_logits)
        return metrics

    @torch.no_grad()
    def _class_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The domain classifier's class logits of features (which come back on the CPU),
        computed on the classifier's own device."""
        head = self.extractor.head
        assert isinstance(head, torch.nn.Module)
        return head(features.to(next(head.parameters()).device)).float().cpu()
