"""The baseline: a study's first trial runs the trainer's defaults, and the study's best is
reported against it ("best 0.93, defaults 0.85 (+9%)").

The config itself is built in ``service.warm_start`` (it is queued like the other configs a
study runs first); this module says how the study stands against it.
"""

from __future__ import annotations

import math

from gentune.service.db.models import Study, Trial, TrialState
from gentune.service.db.repository import Repository
from gentune.service.schemas.api import BaselineOut
from gentune.service.schemas.study import StudySpec
from gentune.service.studies.warm_start import (
    BASELINE,
    QueuedConfig,
    baseline_config,
    runs_baseline,
)
from gentune.trainers.registry import get_trainer


def improvement(best: float, baseline: float, direction: str) -> float | None:
    """How much better ``best`` is than ``baseline``, as a fraction of the baseline's size, in
    the objective's direction (negative: worse); None when the baseline is 0 or not finite."""
    if not (math.isfinite(best) and math.isfinite(baseline)) or baseline == 0:
        return None
    gain = best - baseline if direction == "maximize" else baseline - best
    return gain / abs(baseline)


def describe_baseline(repo: Repository, study: Study, best: Trial | None) -> BaselineOut | None:
    """The study's baseline trial and how its best compares; None when it runs none."""
    return baseline_view(study, repo.trial_of_origin(study.id, BASELINE), best)


def baseline_view(study: Study, trial: Trial | None, best: Trial | None) -> BaselineOut | None:
    """``describe_baseline`` with the baseline ``trial`` (None: not started yet) at hand."""
    if "baseline" not in study.spec:
        return None  # submitted before studies ran their defaults first
    spec = StudySpec.model_validate(study.spec)
    if not runs_baseline(spec):
        return None
    trainer = get_trainer(spec.trainer)
    config = baseline_config(spec, trainer) if trainer is not None else QueuedConfig(BASELINE, {})
    state = "queued" if trial is None else str(trial.state)
    value = trial.value if trial is not None else None
    best_value = best.value if best is not None else None
    gain = (
        improvement(best_value, value, spec.objective.direction)
        if best_value is not None and value is not None and state == TrialState.completed
        else None
    )
    return BaselineOut(
        trial_id=trial.id if trial is not None else None,
        number=trial.number if trial is not None else None,
        state=state,  # type: ignore[arg-type]
        value=value,
        params=trial.params if trial is not None else config.params,
        adjusted=config.adjusted,
        reason=trial.reason if trial is not None else None,
        feasible=trial.feasible if trial is not None else None,
        improvement=gain,
        summary=_summary(trial, best, best_value, gain, study.state),
    )


def _summary(
    trial: Trial | None,
    best: Trial | None,
    best_value: float | None,
    gain: float | None,
    study_state: str,
) -> str:
    best_words = f"best {best_value:.4g}" if best_value is not None else "no best yet"
    if trial is None:
        return f"{best_words}; defaults not run" + (
            " yet" if study_state in ("queued", "running") else ""
        )
    value = f"{trial.value:.4g}" if trial.value is not None else "no value"
    match trial.state:
        case TrialState.running:
            return f"{best_words}; defaults running ({value} so far)"
        case TrialState.pruned:
            return (
                f"{best_words}; defaults pruned at step {trial.pruned_step} ({value}): "
                f"{trial.reason}"
            )
        case TrialState.failed:
            return f"{best_words}; defaults failed: {trial.reason}"
    if trial.feasible is False:
        return f"{best_words}; defaults {value}, outside the constraints"
    if best is not None and best.id == trial.id:
        return f"{best_words} is the defaults' own: no config beat them yet"
    if gain is None:
        return f"{best_words}, defaults {value}"
    return f"{best_words}, defaults {value} ({gain:+.0%})"
