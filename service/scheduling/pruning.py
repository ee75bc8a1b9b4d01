"""PruningScheduler: a Ray Tune scheduler that asks the study's Optuna pruner at each evaluation.

Every evaluation's objective is reported into the trial's Optuna trial; when the pruner says
so, Tune is told STOP and the trial keeps a reason a person can read. A non-finite objective
stops the trial at once: the run has diverged.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState as OptunaTrialState
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from service.scheduling.ledger import DriverSide, Ledger, TrialRecord
from service.schemas.study import PrunerSpec

log = logging.getLogger(__name__)


def build_pruner(spec: PrunerSpec) -> optuna.pruners.BasePruner:
    match spec.type:
        case "none":
            return optuna.pruners.NopPruner()
        case "median":
            return optuna.pruners.MedianPruner(
                spec.n_startup_trials, spec.n_warmup_steps, spec.interval_steps
            )
        case "percentile":
            return optuna.pruners.PercentilePruner(
                spec.percentile, spec.n_startup_trials, spec.n_warmup_steps, spec.interval_steps
            )
        case "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner(
                min_resource=spec.min_resource,
                reduction_factor=spec.reduction_factor,
                min_early_stopping_rate=spec.min_early_stopping_rate,
            )
        case "hyperband":
            return optuna.pruners.HyperbandPruner(
                spec.min_resource, spec.max_resource, spec.reduction_factor
            )
        case "wilcoxon":
            return optuna.pruners.WilcoxonPruner(
                p_threshold=spec.p_threshold, n_startup_steps=spec.n_startup_steps
            )
        case "threshold":
            return optuna.pruners.ThresholdPruner(
                lower=spec.lower,
                upper=spec.upper,
                n_warmup_steps=spec.n_warmup_steps,
                interval_steps=spec.interval_steps,
            )
        case "patient":
            wrapped = build_pruner(spec.wrapped) if spec.wrapped is not None else None
            return optuna.pruners.PatientPruner(
                wrapped, patience=spec.patience, min_delta=spec.min_delta
            )
    raise ValueError(f"unknown pruner {spec.type}")


def explain_prune(
    spec: PrunerSpec, study: optuna.Study, record: TrialRecord, metric: str, step: int, value: float
) -> str:
    """Say in words why ``spec``'s pruner stopped the trial at ``step``."""
    best = record.best_value if record.best_value is not None else value
    head = f"{spec.type.replace('_', '-')} pruner at step {step}"
    match spec.type:
        case "median" | "percentile":
            keep = 50.0 if spec.type == "median" else spec.percentile
            direction = study.direction
            q = 100.0 - keep if direction == optuna.study.StudyDirection.MAXIMIZE else keep
            others = [
                t.intermediate_values[step]
                for t in study.get_trials(deepcopy=False, states=(OptunaTrialState.COMPLETE,))
                if step in t.intermediate_values
            ]
            if not others:
                return f"{head}: best {metric} so far {best:.4g}"
            threshold = float(np.nanpercentile(np.array(others, dtype=float), q))
            relation = "<" if direction == optuna.study.StudyDirection.MAXIMIZE else ">"
            label = "median" if spec.type == "median" else f"{q:g}th percentile"
            return (
                f"{head}: best {metric} so far {best:.4g} {relation} {label} {threshold:.4g} "
                f"of {len(others)} completed trials at this step"
            )
        case "threshold":
            if spec.lower is not None and value < spec.lower:
                return f"{head}: {metric} {value:.4g} below the lower bound {spec.lower:g}"
            return f"{head}: {metric} {value:.4g} above the upper bound {spec.upper:g}"
        case "patient":
            return (
                f"{head}: {metric} did not improve by more than {spec.min_delta:g} in "
                f"{spec.patience} steps (best {best:.4g})"
                + (
                    f", and the wrapped {spec.wrapped.type} pruner agreed"
                    if spec.wrapped is not None
                    else ""
                )
            )
        case "successive_halving" | "hyperband":
            return (
                f"{head}: {metric} {best:.4g} not in the top 1/{spec.reduction_factor} of "
                "the trials that reached this rung"
            )
        case "wilcoxon":
            return (
                f"{head}: {metric} is significantly worse than the best trial's over the "
                f"same steps (p < {spec.p_threshold:g})"
            )
    return f"{head}: {metric} {value:.4g}"


class PruningScheduler(DriverSide, FIFOScheduler):
    def __init__(self, ledger: Ledger, study: optuna.Study, pruner_spec: PrunerSpec) -> None:
        super().__init__()
        self.ledger = ledger
        self.study = study
        self.pruner_spec = pruner_spec

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        record = self.ledger.trials.get(trial.trial_id)
        step = result.get("step")
        if record is None or step is None or step == record.last_step:
            return TrialScheduler.CONTINUE  # unknown trial, or Tune repeating the last result
        metric = self.ledger.objective
        value = result.get(f"metrics/{metric}")
        if value is None:
            record.last_step = step
            return TrialScheduler.CONTINUE
        value = float(value)
        record.observe(step, value, self.ledger.direction)
        if not math.isfinite(value):
            record.prune_reason = f"{metric} is {value} at step {step}: training diverged"
            return TrialScheduler.STOP
        record.optuna_trial.report(value, step)
        if record.optuna_trial.should_prune():
            record.prune_reason = explain_prune(
                self.pruner_spec, self.study, record, metric, step, value
            )
            log.info(
                "study %s: trial %s pruned: %s",
                self.ledger.study_id,
                record.db_id,
                record.prune_reason,
            )
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE
