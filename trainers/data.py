"""Datasets for the trainers: 2-D Gaussian mixtures sampled afresh for every batch."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GaussianMixture2D:
    """Equal-weight isotropic Gaussian mixture in the plane, the usual mode-collapse probe."""

    name: str
    means: torch.Tensor  # (k, 2)
    std: float

    @property
    def n_modes(self) -> int:
        return int(self.means.shape[0])

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` points: a uniformly chosen mode plus Gaussian noise of ``std``."""
        idx = torch.randint(0, self.n_modes, (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator) * self.std
        return self.means[idx] + noise


def ring8() -> GaussianMixture2D:
    """8 modes equally spaced on the unit circle, std 0.01 (as in PacGAN and VEEGAN)."""
    angles = torch.arange(8, dtype=torch.float32) * (2 * math.pi / 8)
    means = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture2D("ring8", means, 0.01)


def grid25() -> GaussianMixture2D:
    """25 modes on the grid {-4, -2, 0, 2, 4}^2, std 0.05 (as in PacGAN and VEEGAN)."""
    coords = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    xs, ys = torch.meshgrid(coords, coords, indexing="ij")
    means = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)
    return GaussianMixture2D("grid25", means, 0.05)


MIXTURES = {"ring8": ring8, "grid25": grid25}


def gaussian_mixture(name: str) -> GaussianMixture2D:
    """The named mixture; ``name`` must be a key of ``MIXTURES`` (checked by the param model)."""
    return MIXTURES[name]()
