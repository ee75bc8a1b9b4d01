"""Mode coverage of samples from a Gaussian mixture (the PacGAN / VEEGAN protocol)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModeMetrics:
    modes: int
    """Modes captured: at least one high-quality sample has this mode as its nearest."""
    hq_fraction: float
    """Share of samples within ``n_std`` standard deviations of their nearest mode."""
    mode_kl: float
    """KL divergence of the high-quality samples' mode histogram from uniform (0 is best)."""


def mode_metrics(
    samples: torch.Tensor, means: torch.Tensor, std: float, n_std: float = 3.0
) -> ModeMetrics:
    """Score ``samples`` (n, d) against mixture ``means`` (k, d) with component ``std``."""
    k = means.shape[0]
    dist = torch.cdist(samples.double(), means.double())
    nearest_dist, nearest = dist.min(dim=1)
    finite = torch.isfinite(nearest_dist)
    high_quality = finite & (nearest_dist <= n_std * std)
    n_hq = int(high_quality.sum())
    counts = torch.bincount(nearest[high_quality], minlength=k).double()
    modes = int((counts > 0).sum())
    if n_hq == 0:
        # No sample lands on any mode: the histogram is undefined; report the worst KL a
        # distribution that puts all mass on one mode would get.
        return ModeMetrics(modes=0, hq_fraction=0.0, mode_kl=math.log(k))
    p = counts / n_hq
    nonzero = p > 0
    kl = float((p[nonzero] * torch.log(p[nonzero] * k)).sum())
    return ModeMetrics(modes=modes, hq_fraction=n_hq / samples.shape[0], mode_kl=kl)
