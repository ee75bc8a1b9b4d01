"""Warm starts: the configs a study runs before its sampler's own, and refined follow-ups.

A study runs first its baseline (the trainer's defaults, unless ``baseline: false``), then its
``points_to_evaluate`` (in order), then the best configs of an earlier study (``warm_start``).
All are checked at submit; ``warm_start`` is resolved then to the ids of the trials it takes,
so the stored definition starts the same way when run again.
``refined_definition`` writes a follow-up study whose ranges are narrowed around a study's
best trial and that warm-starts from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import PydanticUndefined

from gentune.service.db.models import Study, Trial, TrialState
from gentune.service.db.repository import Repository
from gentune.service.errors import Conflict, FieldError, InvalidInput, NotFound
from gentune.service.schemas.study import (
    CategoricalParam,
    FloatParam,
    IntParam,
    ParamSpec,
    StudySpec,
    WarmStart,
)
from gentune.trainers.base import Trainer

ORIGIN = "gentune_origin"
"""The Optuna user attribute naming where an enqueued config came from."""
ORIGIN_NOTE = "gentune_origin_note"
"""The Optuna user attribute saying how a queued config was adjusted to fit the space."""
BASELINE = "defaults"
"""The origin of a study's baseline trial: the trainer's defaults."""


@dataclass(frozen=True)
class QueuedConfig:
    """A config a study runs before its sampler's own: where it came from, the searched
    params' values (the sampler fills in the rest) and how they were fitted to the space."""

    origin: str
    params: dict[str, Any]
    adjusted: dict[str, str] = field(default_factory=dict)

    @property
    def note(self) -> str | None:
        if not self.adjusted:
            return None
        return "; ".join(f"{name}: {why}" for name, why in self.adjusted.items())


def runs_baseline(spec: StudySpec) -> bool:
    """Whether the study's first trial is the trainer's defaults."""
    return plans_baseline(spec.baseline, spec.sampler.type)


def plans_baseline(baseline: bool, sampler_type: str) -> bool:
    """``runs_baseline`` from a definition's ``baseline`` and sampler type (not with
    ``grid``: a grid runs its own points, in order)."""
    return baseline and sampler_type != "grid"


def baseline_config(search_space: Mapping[str, ParamSpec], trainer: Trainer) -> QueuedConfig:
    """The trainer's defaults as a config of a study's ``search_space``: each searched param gets
    its default, moved to the nearest allowed value when the range or the choices leave it
    out (and the move is noted); a param without a default is left to the sampler."""
    params: dict[str, Any] = {}
    adjusted: dict[str, str] = {}
    fields = trainer.Params.model_fields
    for name, dist in search_space.items():
        info = fields.get(name)
        if info is None or info.default is PydanticUndefined or info.default is None:
            adjusted[name] = "the trainer has no default; the sampler picks it"
            continue
        default = info.default
        value = nearest_allowed(dist, default)
        if value is None:
            adjusted[name] = f"the default {default!r} does not fit; the sampler picks it"
            continue
        params[name] = value
        if misfit(dist, default) is not None:
            adjusted[name] = f"the default {default!r} is not allowed here; moved to {value!r}"
    return QueuedConfig(BASELINE, params, adjusted)


def nearest_allowed(dist: ParamSpec, value: Any) -> Any:
    """The value of ``dist`` nearest ``value``: ``value`` itself when it fits; a numeric value
    clamped into the range and onto its steps (log ranges compared in log space); for choices,
    the numerically nearest one, else the first. None when there is no sensible one."""
    if misfit(dist, value) is None:
        return as_param_value(dist, value)
    if isinstance(dist, CategoricalParam):
        if _is_number(value):
            numbers = [c for c in dist.choices if _is_number(c)]
            if numbers:
                return min(numbers, key=lambda c: (abs(float(c) - float(value)), numbers.index(c)))
        return dist.choices[0]
    if not _is_number(value):
        return None
    clamped = min(max(float(value), dist.low), dist.high)
    if dist.step is not None:
        k = round((clamped - dist.low) / dist.step)
        top = math.floor((dist.high - dist.low) / dist.step + 1e-9)
        clamped = dist.low + min(max(k, 0), top) * dist.step
    return as_param_value(dist, round(clamped) if isinstance(dist, IntParam) else clamped)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def misfit(dist: ParamSpec, value: Any) -> str | None:
    """Why ``value`` cannot be a value of ``dist``; None when it can."""
    if isinstance(dist, CategoricalParam):
        if any(_same_choice(choice, value) for choice in dist.choices):
            return None
        return f"{value!r} is not one of the choices {dist.choices}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"must be a number, got {value!r}"
    if isinstance(dist, IntParam) and not float(value).is_integer():
        return f"must be a whole number, got {value!r}"
    if not dist.low <= value <= dist.high:
        return f"{value!r} is outside the searched range [{dist.low}, {dist.high}]"
    step = dist.step
    if step is not None and not _on_step(value, dist.low, step):
        return f"{value!r} is not on the range's steps ({dist.low} + k × {step})"
    return None


def _same_choice(choice: Any, value: Any) -> bool:
    # 1 == True and 1 == 1.0 in Python; a choice matches only a value of its own kind.
    return isinstance(choice, bool) is isinstance(value, bool) and choice == value


def _on_step(value: float, low: float, step: float) -> bool:
    steps = (value - low) / step
    return abs(steps - round(steps)) <= 1e-9 * max(1.0, abs(steps))


def as_param_value(dist: ParamSpec, value: Any) -> Any:
    """A fitting value in the type Optuna stores for ``dist`` (an int param's 3.0 is 3)."""
    if isinstance(dist, IntParam):
        return int(value)
    if isinstance(dist, FloatParam):
        return float(value)
    return value


def check_points(spec: StudySpec) -> list[FieldError]:
    """The checks of ``points_to_evaluate`` and ``warm_start`` that need no database."""
    if not spec.points_to_evaluate and spec.warm_start is None:
        return []
    if spec.sampler.type == "grid":
        field = "points_to_evaluate" if spec.points_to_evaluate else "warm_start"
        return [
            FieldError(
                field,
                "a grid study runs every grid point once, in the grid's order; drop "
                f"{field} or choose another sampler",
            )
        ]
    errors = []
    searched = ", ".join(spec.search_space) or "none"
    for index, point in enumerate(spec.points_to_evaluate):
        where = f"points_to_evaluate.{index}"
        if not point:
            errors.append(
                FieldError(where, f"is empty; give values of searched params ({searched})")
            )
        for name, value in point.items():
            dist = spec.search_space.get(name)
            if dist is None:
                errors.append(
                    FieldError(
                        f"{where}.{name}",
                        f"'{name}' is not searched (searched: {searched}); a fixed value "
                        "belongs under params",
                    )
                )
            elif (why := misfit(dist, value)) is not None:
                errors.append(FieldError(f"{where}.{name}", why))
    first = len(spec.points_to_evaluate) + runs_baseline(spec)
    if first > spec.budget.n_trials:
        errors.append(_too_few_trials(spec, first))
    return errors


def _too_few_trials(spec: StudySpec, first: int) -> FieldError:
    return FieldError(
        "budget.n_trials",
        f"is {spec.budget.n_trials}, fewer than the {first} configs that "
        + ("the baseline (baseline: false drops it), " if runs_baseline(spec) else "")
        + "points_to_evaluate and warm_start run first",
    )


def project(params: Mapping[str, Any], space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """The values of ``params`` that are searched in ``space`` and fit their ranges."""
    return {
        name: as_param_value(space[name], value)
        for name, value in params.items()
        if name in space and misfit(space[name], value) is None
    }


def resolve_warm_start(repo: Repository, spec: StudySpec) -> StudySpec:
    """Check ``warm_start`` against the database and fix the trials it takes; raise
    ``InvalidInput`` naming the field when it cannot be used."""
    warm = spec.warm_start
    if warm is None:
        return spec
    try:
        source = repo.get_study(warm.from_study)
    except NotFound:
        raise InvalidInput(
            [FieldError("warm_start.from_study", f"there is no study {warm.from_study}")]
        ) from None
    if source.trainer != spec.trainer:
        raise InvalidInput(
            [
                FieldError(
                    "warm_start.from_study",
                    f"study {source.id} tunes trainer '{source.trainer}' and this one "
                    f"'{spec.trainer}'; a warm start takes configs of the same trainer",
                )
            ]
        )
    trials = _source_trials(repo, source, warm)
    taken = [t for t in trials if project(t.params, spec.search_space)]
    if not taken:
        shared = sorted({name for t in trials for name in t.params} & set(spec.search_space))
        why = (
            f"none of study {source.id}'s searched params is searched here"
            if not shared
            else f"the values of study {source.id}'s best trials for {', '.join(shared)} lie "
            "outside this study's ranges"
        )
        raise InvalidInput([FieldError("warm_start.from_study", why)])
    first = runs_baseline(spec) + len(spec.points_to_evaluate) + len(taken)
    if first > spec.budget.n_trials:
        raise InvalidInput([_too_few_trials(spec, first)])
    resolved = warm.model_copy(update={"trials": [t.id for t in taken]})
    return spec.model_copy(update={"warm_start": resolved})


def _source_trials(repo: Repository, source: Study, warm: WarmStart) -> list[Trial]:
    if warm.trials is None:
        best = repo.best_trials(source.id, source.spec["objective"]["direction"], warm.top_k)
        if not best:
            raise InvalidInput(
                [
                    FieldError(
                        "warm_start.from_study",
                        f"study {source.id} has no completed trial yet ({source.state})",
                    )
                ]
            )
        return best
    found = {t.id: t for t in repo.trials_by_id(warm.trials)}
    errors = []
    for index, trial_id in enumerate(warm.trials):
        trial = found.get(trial_id)
        if trial is None or trial.study_id != source.id:
            errors.append(
                FieldError(
                    f"warm_start.trials.{index}", f"study {source.id} has no trial {trial_id}"
                )
            )
        elif trial.state != TrialState.completed:
            errors.append(
                FieldError(
                    f"warm_start.trials.{index}",
                    f"trial {trial_id} is {trial.state}; only completed trials are taken",
                )
            )
    if errors:
        raise InvalidInput(errors)
    return [found[trial_id] for trial_id in warm.trials]


def first_configs(
    spec: StudySpec, trainer: Trainer, source_trials: Iterable[Trial]
) -> list[QueuedConfig]:
    """The configs the study runs first, in order: the baseline, the points, the warm start."""
    configs = [baseline_config(spec.search_space, trainer)] if runs_baseline(spec) else []
    configs += [
        QueuedConfig(f"points_to_evaluate[{index}]", project(point, spec.search_space))
        for index, point in enumerate(spec.points_to_evaluate)
    ]
    if spec.warm_start is not None:
        by_id = {t.id: t for t in source_trials}
        for trial_id in spec.warm_start.trials or []:
            trial = by_id.get(trial_id)
            if trial is not None:
                origin = f"warm start: study {trial.study_id} trial {trial.id}"
                configs.append(QueuedConfig(origin, project(trial.params, spec.search_space)))
    return configs


# --- refine ----------------------------------------------------------------------------------


def refined_definition(
    study: Study, best: Trial | None, factor: float, n_trials: int | None
) -> dict[str, Any]:
    """A follow-up definition: ``study``'s, with each numeric range narrowed to ``factor`` of
    its width around the best trial's value, warm-started from the study's best trials."""
    if best is None:
        raise Conflict(f"Study {study.id} has no completed trial yet to refine around.")
    spec = StudySpec.model_validate(study.spec)
    space = {
        name: narrow(dist, best.params[name], factor) if name in best.params else dist
        for name, dist in spec.search_space.items()
    }
    budget = spec.budget.model_copy(
        update={"n_trials": n_trials if n_trials is not None else spec.budget.n_trials}
    )
    warm = (
        None
        if spec.sampler.type == "grid"
        else WarmStart(from_study=study.id, top_k=min(5, budget.n_trials))
    )
    refined = spec.model_copy(
        update={
            "name": f"{spec.name[:92]}-refined",
            "description": f"Study {study.id} ({spec.name}) refined around its best trial "
            f"{best.id}: numeric ranges narrowed to {factor:g} of their width.",
            "search_space": space,
            "budget": budget,
            "points_to_evaluate": [],
            "warm_start": warm,
            # The follow-up starts from the best trials, which the first study already
            # compared with the defaults.
            "baseline": False,
        }
    )
    return refined.model_dump(mode="json", exclude_none=True)


def narrow(dist: ParamSpec, center: Any, factor: float) -> ParamSpec:
    """``dist`` narrowed to ``factor`` of its width around ``center``, inside its old range
    (a window that would cross an end slides back in). Choices stay as they are."""
    if isinstance(dist, CategoricalParam) or misfit(dist, center) is not None:
        return dist
    forward, back = (math.log, math.exp) if dist.log else (float, float)
    low, high, mid = forward(dist.low), forward(dist.high), forward(center)
    width = (high - low) * factor
    start = min(max(mid - width / 2, low), high - width)
    new_low, new_high = back(start), back(start + width)
    if isinstance(dist, IntParam):
        return _narrow_int(dist, new_low, new_high)
    if dist.step is not None:
        new_low = dist.low + math.floor((new_low - dist.low) / dist.step + 1e-9) * dist.step
        new_high = dist.low + math.ceil((new_high - dist.low) / dist.step - 1e-9) * dist.step
    new_low, new_high = _tidy(new_low, math.floor), _tidy(new_high, math.ceil)
    new_low, new_high = max(new_low, dist.low), min(new_high, dist.high)
    if not new_low < new_high or not new_low <= center <= new_high:
        return dist
    return dist.model_copy(update={"low": new_low, "high": new_high})


def _narrow_int(dist: IntParam, low: float, high: float) -> IntParam:
    new_low = dist.low + math.floor((low - dist.low) / dist.step) * dist.step
    new_high = dist.low + math.ceil((high - dist.low) / dist.step) * dist.step
    new_low, new_high = max(new_low, dist.low), min(new_high, dist.high)
    if new_high - new_low < dist.step:  # keep at least two values to choose from
        return dist
    return dist.model_copy(update={"low": new_low, "high": new_high})


def _tidy(value: float, rounding: Any) -> float:
    """``value`` to 3 significant digits, rounded outward so the window only grows."""
    if value == 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(abs(value))) - 2)
    return float(f"{rounding(value / scale) * scale:.6g}")  # .6g drops the float noise


def trial_ids(spec: StudySpec) -> Sequence[int]:
    """The earlier trials a definition warm-starts from."""
    if spec.warm_start is None:
        return []
    return spec.warm_start.trials or []
