"""Sample-quality metrics computed inside every trial evaluation."""

from gentune.trainers.metrics.diversity import diversity_ratio, mean_pairwise_distance
from gentune.trainers.metrics.frechet import frechet_distance, frechet_from_stats, gaussian_stats
from gentune.trainers.metrics.modes import ModeMetrics, mode_metrics

__all__ = [
    "ModeMetrics",
    "diversity_ratio",
    "frechet_distance",
    "frechet_from_stats",
    "gaussian_stats",
    "mean_pairwise_distance",
    "mode_metrics",
]
