"""LocalSearchSampler: some trials perturb the best config so far; the rest ask another sampler.

On a budget of a dozen or two trials, TPE spends most of them learning the space and rarely
proposes a config near the best one it has (with one good trial in six dimensions its Parzen
window is nearly as wide as the prior). A study whose first trial is the trainer's defaults
often has its best config from the start, and the configs around it are where a better one
is most likely. This sampler spends a share of the trials there: each numeric param moves by
a Gaussian step of ``scale`` of its range (log ranges in log space, onto their step), each
categorical one switches to another choice with probability ``scale``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState


class LocalSearchSampler(optuna.samplers.BaseSampler):
    """Perturbs the best completed trial for a ``share`` of the trials (single-objective
    studies, once one has completed); ``base`` samples everything else."""

    def __init__(
        self, base: optuna.samplers.BaseSampler, share: float, scale: float, seed: int | None
    ) -> None:
        self._base = base
        self._share = share
        self._scale = scale
        self._rng = np.random.RandomState(seed)
        self._local: dict[int, FrozenTrial] = {}
        """Trials (by number) that perturb, and the best trial each perturbs."""

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._base.reseed_rng()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)
        if len(study.directions) > 1 or self._rng.rand() >= self._share:
            return
        try:
            self._local[trial.number] = study.best_trial
        except ValueError:  # no completed (feasible) trial yet
            return

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if trial.number in self._local:
            return {}  # every param goes through sample_independent
        return self._base.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if trial.number in self._local:
            return {}
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        best = self._local.get(trial.number)
        if best is None or param_name not in best.params:
            return self._base.sample_independent(study, trial, param_name, param_distribution)
        return self._perturb(best.params[param_name], param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._local.pop(trial.number, None)
        self._base.after_trial(study, trial, state, values)

    def _perturb(self, value: Any, dist: BaseDistribution) -> Any:
        if isinstance(dist, CategoricalDistribution):
            others = [c for c in dist.choices if c != value]
            if others and self._rng.rand() < self._scale:
                return others[self._rng.randint(len(others))]
            return value if value in dist.choices else dist.choices[0]
        assert isinstance(dist, FloatDistribution | IntDistribution)
        forward, back = (math.log, math.exp) if dist.log else (float, float)
        low, high = forward(dist.low), forward(dist.high)
        moved = forward(value) + self._rng.normal(0.0, self._scale * (high - low))
        new = back(min(max(moved, low), high))
        step = dist.step
        if step is not None:
            new = dist.low + round((new - dist.low) / step) * step
        new = min(max(new, dist.low), dist.high)
        return int(round(new)) if isinstance(dist, IntDistribution) else float(new)
