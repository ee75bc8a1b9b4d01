"""Sample-quality metrics computed inside every trial evaluation."""

from trainers.metrics.frechet import frechet_distance, frechet_from_stats, gaussian_stats
from trainers.metrics.modes import ModeMetrics, mode_metrics

__all__ = [
    "ModeMetrics",
    "frechet_distance",
    "frechet_from_stats",
    "gaussian_stats",
    "mode_metrics",
]
