"""Sample-quality metrics for images, computed on features of a ``FeatureExtractor``.

FID and KID compare feature distributions; precision and recall (k=3, Kynkäänniemi et al.
2019) and density and coverage (k=5, Naeem et al. 2020) use k-nearest-neighbour balls around
real and generated features; the Inception Score uses a classifier's predictions (here the
domain classifier's). PSNR and SSIM of reconstructions come from torchmetrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from gentune.trainers.metrics.frechet import frechet_from_stats, gaussian_stats


@dataclass(frozen=True)
class ReferenceStats:
    """What the metrics need of the real data: Gaussian statistics and some raw features."""

    mu: np.ndarray
    cov: np.ndarray
    features: torch.Tensor

    @classmethod
    def of(cls, features: torch.Tensor) -> ReferenceStats:
        mu, cov = gaussian_stats(features)
        return cls(mu=mu, cov=cov, features=features)


def fid(reference: ReferenceStats, fake_features: torch.Tensor) -> float:
    if not bool(torch.isfinite(fake_features).all()):
        return math.inf
    return frechet_from_stats(reference.mu, reference.cov, *gaussian_stats(fake_features))


def kid(
    real: torch.Tensor, fake: torch.Tensor, subsets: int = 10, subset_size: int = 500, seed: int = 0
) -> float:
    """Kernel Inception Distance: unbiased MMD^2 with the kernel (x.y / d + 1)^3, averaged
    over random subsets."""
    if not bool(torch.isfinite(fake).all()):
        return math.inf
    n = min(subset_size, real.shape[0], fake.shape[0])
    d = real.shape[1]
    generator = torch.Generator().manual_seed(seed)
    estimates = []
    for _ in range(subsets):
        x = real[torch.randperm(real.shape[0], generator=generator)[:n]].double()
        y = fake[torch.randperm(fake.shape[0], generator=generator)[:n]].double()
        k_xx = (x @ x.T / d + 1) ** 3
        k_yy = (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        off = 1.0 - torch.eye(n, dtype=torch.float64)
        mmd = ((k_xx * off).sum() + (k_yy * off).sum()) / (n * (n - 1)) - 2 * k_xy.mean()
        estimates.append(float(mmd))
    return float(np.mean(estimates))


def _kth_neighbour_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    distances = torch.cdist(x, x)
    return distances.kthvalue(k + 1, dim=1).values  # +1: each point is its own nearest


@dataclass(frozen=True)
class PRDC:
    precision: float
    recall: float
    density: float
    coverage: float


def prdc(real: torch.Tensor, fake: torch.Tensor, k_pr: int = 3, k_dc: int = 5) -> PRDC:
    """Precision/recall (k=3) and density/coverage (k=5) of ``fake`` against ``real``."""
    if not bool(torch.isfinite(fake).all()):
        return PRDC(0.0, 0.0, 0.0, 0.0)
    real, fake = real.double(), fake.double()
    real_to_fake = torch.cdist(real, fake)  # (n_real, n_fake)
    radius_real_pr = _kth_neighbour_radius(real, k_pr)
    radius_fake_pr = _kth_neighbour_radius(fake, k_pr)
    precision = (real_to_fake <= radius_real_pr[:, None]).any(dim=0).double().mean()
    recall = (real_to_fake <= radius_fake_pr[None, :]).any(dim=1).double().mean()
    radius_real_dc = _kth_neighbour_radius(real, k_dc)
    inside = real_to_fake <= radius_real_dc[:, None]
    density = inside.double().sum() / (k_dc * fake.shape[0])
    coverage = (real_to_fake.min(dim=1).values <= radius_real_dc).double().mean()
    return PRDC(float(precision), float(recall), float(density), float(coverage))


def inception_score(logits: torch.Tensor, splits: int = 1) -> float:
    """exp(E_x KL(p(y|x) || p(y))) from a classifier's logits."""
    if not bool(torch.isfinite(logits).all()):
        return 0.0
    scores = []
    for part in logits.double().chunk(splits):
        p_yx = part.softmax(dim=1)
        p_y = p_yx.mean(dim=0, keepdim=True)
        kl = (p_yx * (p_yx.clamp_min(1e-12).log() - p_y.clamp_min(1e-12).log())).sum(dim=1)
        scores.append(float(kl.mean().exp()))
    return float(np.mean(scores))


def class_kl(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> float:
    """KL(real || generated) of the class histograms a classifier gives two image sets: 0
    when the samples hold each class as often as the real data; a class the generator never
    draws costs about its real share × log(its real share × 2n). Counts are smoothed by 1/2
    so that the value stays finite."""
    if not bool(torch.isfinite(fake_logits).all()):
        return math.inf
    classes = real_logits.shape[1]
    real = _class_shares(real_logits, classes)
    fake = _class_shares(fake_logits, classes)
    return float((real * (real.log() - fake.log())).sum())


def _class_shares(logits: torch.Tensor, classes: int) -> torch.Tensor:
    counts = torch.bincount(logits.argmax(dim=1), minlength=classes).double()
    return (counts + 0.5) / (counts.sum() + 0.5 * classes)


def psnr(reconstructions: torch.Tensor, targets: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (data range 2)."""
    return float(peak_signal_noise_ratio(reconstructions.clamp(-1, 1), targets, data_range=2.0))


def ssim(reconstructions: torch.Tensor, targets: torch.Tensor) -> float:
    value = structural_similarity_index_measure(
        reconstructions.clamp(-1, 1), targets, data_range=2.0
    )
    return float(value)  # type: ignore[arg-type]
