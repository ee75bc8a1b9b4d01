"""Sample diversity: how spread out generated samples are, next to the real data.

A generator that collapses onto a few modes draws samples much closer together than real
data is; the ratio of mean pairwise distances (in a feature space, or of raw points in 2-D)
falls towards 0 long before the objective says why. It is the ``stability/diversity`` signal.
"""

from __future__ import annotations

import math

import torch


def mean_pairwise_distance(x: torch.Tensor, n: int = 500) -> float:
    """Mean Euclidean distance between distinct rows among the first ``n`` rows of ``x``."""
    x = x[:n].flatten(1).double()
    if x.shape[0] < 2 or not bool(torch.isfinite(x).all()):
        return math.nan
    distances = torch.cdist(x, x)
    m = x.shape[0]
    return float(distances.sum() / (m * (m - 1)))


def diversity_ratio(fake: torch.Tensor, real_mean_distance: float, n: int = 500) -> float:
    """Mean pairwise distance of ``fake`` over the real data's: about 1 for a healthy
    generator, near 0 for one that draws the same few samples."""
    if real_mean_distance <= 0:
        return math.nan
    return mean_pairwise_distance(fake, n) / real_mean_distance
