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

from trainers.data import ImageData
from trainers.metrics.features import DomainClassifier, default_cache_dir, extractor_for
from trainers.metrics.image import ReferenceStats, fid, inception_score, kid, prdc

IMAGE_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "is")


class ImageEvaluator:
    def __init__(
        self,
        data: ImageData,
        extractor: str = "domain",
        n_samples: int = 1000,
        cache_dir: Path | None = None,
    ) -> None:
        self.data = data
        self.n_samples = n_samples
        self.cache_dir = cache_dir or default_cache_dir()
        self.extractor = extractor_for(extractor, data, self.cache_dir)
        self.reference = ReferenceStats.of(self._reference_features())

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
        }
        metrics["is"] = math.nan  # the random extractor has no classes to score
        if isinstance(self.extractor, DomainClassifier):
            with torch.no_grad():
                metrics["is"] = inception_score(self.extractor.head(features))
        return metrics
