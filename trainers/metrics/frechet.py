"""Fréchet distance between two sets of vectors (FID's formula, on any features)."""

from __future__ import annotations

import numpy as np
import torch


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    eigvals, eigvecs = np.linalg.eigh(matrix)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def gaussian_stats(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of the rows of ``x``."""
    array = x.double().cpu().numpy()
    return array.mean(axis=0), np.atleast_2d(np.cov(array, rowvar=False))


def frechet_from_stats(
    mu_x: np.ndarray, cov_x: np.ndarray, mu_y: np.ndarray, cov_y: np.ndarray
) -> float:
    """||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 (S_x S_y)^(1/2)).

    The trace of the matrix square root is the sum of the square roots of the eigenvalues of
    S_x^(1/2) S_y S_x^(1/2), which is symmetric and so numerically stable.
    """
    root_x = _sqrt_psd(cov_x)
    cross = np.linalg.eigvalsh(root_x @ cov_y @ root_x)
    trace_sqrt = float(np.sqrt(np.clip(cross, 0.0, None)).sum())
    diff = mu_x - mu_y
    value = float(diff @ diff) + float(np.trace(cov_x) + np.trace(cov_y)) - 2.0 * trace_sqrt
    return max(value, 0.0)


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to ``real`` and ``fake`` (rows are samples).

    Returns ``inf`` when ``fake`` holds non-finite values (a diverged generator).
    """
    if not bool(torch.isfinite(fake).all()):
        return float("inf")
    return frechet_from_stats(*gaussian_stats(real), *gaussian_stats(fake))
