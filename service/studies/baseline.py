"""The baseline: a study's first trial runs the trainer's defaults, and the study's best is
reported against it ("best 0.93, defaults 0.85 (+9%)").

The config itself is built in ``service.warm_start`` (it is queued like the other configs a
study runs first); this module says how the study stands against it.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

from pydantic import TypeAdapter

from gentune.service.db.models import Study, Trial, TrialState
from gentune.service.db.repository import Repository, TrialBrief
from gentune.service.schemas.api import BaselineOut
from gentune.service.schemas.study import ParamSpec
from gentune.service.studies.warm_start import (
    BASELINE,
    QueuedConfig,
    baseline_config,
    plans_baseline,
)
from gentune.trainers.registry import get_trainer

SEARCH_SPACE = TypeAdapter(dict[str, ParamSpec])


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


def baseline_view(
    study: Study, trial: Trial | TrialBrief | None, best: Trial | TrialBrief | None
) -> BaselineOut | None:
    """``describe_baseline`` with the baseline ``trial`` (None: not started yet) at hand."""
    if "baseline" not in study.spec:
        return None  # submitted before studies ran their defaults first
    spec = study.spec
    if not plans_baseline(spec["baseline"], spec["sampler"]["type"]):
        return None
    config = _planned_config(spec["trainer"], json.dumps(spec["search_space"], sort_keys=True))
    direction = spec["objective"]["direction"]
    state = "queued" if trial is None else str(trial.state)
    value = trial.value if trial is not None else None
    best_value = best.value if best is not None else None
    gain = (
        improvement(best_value, value, direction)
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


@lru_cache(maxsize=1024)
def _planned_config(trainer_name: str, search_space: str) -> QueuedConfig:
    """The baseline config of a stored search space (canonical JSON). Cached: the study list
    shows one per study on every poll, and working it out again each time (validating the
    space, matching the trainer's defaults to it) cost most of the list's time."""
    trainer = get_trainer(trainer_name)
    if trainer is None:
        return QueuedConfig(BASELINE, {})
    return baseline_config(SEARCH_SPACE.validate_python(json.loads(search_space)), trainer)


def _summary(
    trial: Trial | TrialBrief | None,
    best: Trial | TrialBrief | None,
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
        case TrialState.pending:
            return f"{best_words}; defaults waiting for a worker"
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
