"""ImageEvaluator: everything a trial computes on its samples at each evaluation.

Reference features of the real training images are computed once per dataset x extractor x
sample count and cached on disk; every trial (and every evaluation) reuses them.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import torch

from trainers.base import ImageTrainerParams, MetricSpec, Reporter
from trainers.data import ImageData
from trainers.metrics.diversity import diversity_ratio, mean_pairwise_distance
from trainers.metrics.features import DomainClassifier, default_cache_dir, extractor_for
from trainers.metrics.image import ReferenceStats, fid, inception_score, kid, prdc

IMAGE_METRIC_SPECS = {
    "fid": MetricSpec("Fréchet distance of generated to real features.", "minimize"),
    "kid": MetricSpec("Kernel (MMD^2) distance of generated to real features.", "minimize"),
    "is": MetricSpec(
        "Inception Score from the domain classifier's classes; needs features domain (or auto "
        "on a labelled dataset), NaN otherwise.",
        "maximize",
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


def start_image_run(
    params: ImageTrainerParams, device: torch.device, reporter: Reporter
) -> tuple[ImageData, ImageEvaluator]:
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
    return data, evaluator


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

    def _reference_features(self) -> torch.Tensor:
        n = min(self.n_samples, self.data.train.shape[0])
        path = self.cache_dir / f"ref-{self.data.fingerprint}-{self.extractor.name}-{n}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)
        order = torch.randperm(self.data.train.shape[0], generator=torch.Generator().manual_seed(0))
        features = self.extractor.features(self.data.train[order[:n]])
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        torch.save(features, tmp)
        os.replace(tmp, path)
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
        metrics["is"] = math.nan  # the random extractor has no classes to score
        if isinstance(self.extractor, DomainClassifier):
            with torch.no_grad():
                metrics["is"] = inception_score(self.extractor.head(features))
        return metrics
