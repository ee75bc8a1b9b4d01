"""Fréchet distance between two sets of vectors (FID's formula, on any features)."""

from __future__ import annotations

import numpy as np
import torch


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    eigvals, eigvecs = np.linalg.eigh(matrix)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) between Gaussians fitted to both sets.

    The trace of the matrix square root is taken as the sum of the square roots of the
    eigenvalues of S_r^(1/2) S_f S_r^(1/2), which is symmetric and so numerically stable.
    Returns ``inf`` when ``fake`` holds non-finite values (a diverged generator).
    """
    if not bool(torch.isfinite(fake).all()):
        return float("inf")
    x = real.double().cpu().numpy()
    y = fake.double().cpu().numpy()
    mu_x, mu_y = x.mean(axis=0), y.mean(axis=0)
    cov_x = np.atleast_2d(np.cov(x, rowvar=False))
    cov_y = np.atleast_2d(np.cov(y, rowvar=False))
    root_x = _sqrt_psd(cov_x)
    cross = np.linalg.eigvalsh(root_x @ cov_y @ root_x)
    trace_sqrt = float(np.sqrt(np.clip(cross, 0.0, None)).sum())
    diff = mu_x - mu_y
    value = float(diff @ diff) + float(np.trace(cov_x) + np.trace(cov_y)) - 2.0 * trace_sqrt
    return max(value, 0.0)
