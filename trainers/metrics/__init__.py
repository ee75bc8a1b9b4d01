"""Sample-quality metrics computed inside every trial evaluation."""

from trainers.metrics.frechet import frechet_distance
from trainers.metrics.modes import ModeMetrics, mode_metrics

__all__ = ["ModeMetrics", "frechet_distance", "mode_metrics"]
