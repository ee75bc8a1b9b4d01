"""PruningScheduler: a Ray Tune scheduler that applies a study's stability rules and then its
Optuna pruner at each evaluation.

The stability rules see every metric the trainer reported (see ``stability``); the pruner sees
the objective, reported into the trial's Optuna trial. Whatever stops a trial leaves a
``PruneRecord`` (``stability/<rule>`` or ``pruner/<type>``, the step, the values that tripped
it) and a reason a person can read; the trial is told PRUNED to Optuna with its intermediate
values, so the sampler still learns from it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState as OptunaTrialState
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from gentune.service.db.models import PruneRecord
from gentune.service.db.retry import retrying
from gentune.service.scheduling.ledger import DriverSide, Ledger, TrialRecord
from gentune.service.schemas.study import PrunerSpec

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
    """At each evaluation: the trial's stability rules first, then the study's Optuna pruner."""

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
        self.ledger.evaluations += 1
        metrics = reported_metrics(result)
        objective = self.ledger.objective
        value = metrics.get(objective)
        if value is None:
            record.last_step = step
        elif record.observe(step, value, self.ledger.direction):
            record.best_metrics = {
                name: metrics[name] for name in self.ledger.tracked if name in metrics
            }
        verdict = record.monitor.observe(step, metrics) if record.monitor is not None else None
        if verdict is not None:
            # The sampler learns from a pruned trial's last intermediate value; NaN ranks worst.
            last = value if value is not None and math.isfinite(value) else math.nan
            retrying(lambda: record.judged.report(last, step), "reporting to Optuna")
            return self._stop(
                record, f"stability/{verdict.rule}", step, verdict.values, verdict.message
            )
        if value is None or (record.reported_until is not None and step <= record.reported_until):
            return TrialScheduler.CONTINUE  # no objective, or a step an earlier attempt reported
        reported = value if math.isfinite(value) else math.nan
        retrying(lambda: record.judged.report(reported, step), "reporting to Optuna")
        if retrying(record.judged.should_prune, "asking Optuna's pruner"):
            judging = self.ledger.pruning_study or self.study
            reason = retrying(
                lambda: explain_prune(self.pruner_spec, judging, record, objective, step, value),
                "explaining a prune",
            )
            values = {objective: value}
            if record.best_value is not None:
                values[f"{objective}_best"] = record.best_value
            return self._stop(record, f"pruner/{self.pruner_spec.type}", step, values, reason)
        return TrialScheduler.CONTINUE

    def _stop(
        self, record: TrialRecord, by: str, step: int, values: dict[str, float], reason: str
    ) -> str:
        record.prune = PruneRecord(by=by, step=step, values=values)
        record.prune_reason = reason
        retrying(
            lambda: record.optuna_trial.set_user_attr("gentune_pruned_by", by), "telling Optuna"
        )
        log.info("study %s: trial %s pruned: %s", self.ledger.study_id, record.db_id, reason)
        return TrialScheduler.STOP


def reported_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The trainer's metrics from a Tune result, which reaches schedulers flattened."""
    prefix = "metrics/"
    return {k[len(prefix) :]: float(v) for k, v in result.items() if k.startswith(prefix)}
