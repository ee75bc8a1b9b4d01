"""A study definition checked against its trainer and the service's limits, and written out
in full as it is stored (the trainer's defaults made explicit)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from gentune.service.config import Settings
from gentune.service.errors import FieldError, InvalidInput, field_errors_from_pydantic
from gentune.service.schemas.study import (
    CategoricalParam,
    FloatParam,
    IntParam,
    ParamSpec,
    StabilitySpec,
    StudySpec,
)
from gentune.service.studies.space import grid_count, pruner_for, sampler_for
from gentune.service.studies.stability import resolve_rules, rule_metrics
from gentune.service.studies.warm_start import check_points
from gentune.trainers.base import Trainer
from gentune.trainers.registry import get_trainer, trainer_names

SpecCheck = Callable[[StudySpec, Settings], list[FieldError]]
TrainerCheck = Callable[[StudySpec, Trainer], list[FieldError]]


def validate_spec(spec: StudySpec, settings: Settings) -> Trainer:
    """Check ``spec`` against its trainer and the service's limits; raise ``InvalidInput``
    with every error found. Returns the trainer so callers need not look it up again."""
    errors = _check_document(spec, settings)
    if errors:
        raise InvalidInput(errors)  # nothing else is worth checking in an oversized document
    errors = [error for check in LIMIT_CHECKS for error in check(spec, settings)]
    trainer = get_trainer(spec.trainer)
    if trainer is None:
        raise InvalidInput([*errors, _unknown_trainer(spec.trainer)])
    param_errors = _check_params(spec, trainer)
    # Checks that read the trainer's params (the metrics they give) need valid ones.
    checks = TRAINER_CHECKS if not param_errors else TRAINER_CHECKS_WITHOUT_PARAMS
    errors += param_errors + [error for check in checks for error in check(spec, trainer)]
    errors += _check_grid(spec, settings) + check_points(spec)
    if errors:
        raise InvalidInput(errors)
    return trainer


def _check_sizes(spec: StudySpec, settings: Settings) -> list[FieldError]:
    """The service's limits on how much one study may search and run."""
    limits = (
        (
            "search_space",
            len(spec.search_space),
            settings.max_search_space_params,
            "searches {got} parameters; at most {limit} are allowed "
            "(GENTUNE_MAX_SEARCH_SPACE_PARAMS)",
        ),
        (
            "budget.n_trials",
            spec.budget.n_trials,
            settings.max_trials,
            "at most {limit} trials per study, got {got}",
        ),
        (
            "budget.max_concurrent",
            spec.budget.max_concurrent,
            settings.max_concurrent,
            "at most {limit} trials at once, got {got}",
        ),
    )
    return [
        FieldError(field, message.format(got=got, limit=limit))
        for field, got, limit, message in limits
        if got > limit
    ]


def _unknown_trainer(name: str) -> FieldError:
    return FieldError(
        "trainer",
        f"no trainer is registered as '{name}'; registered trainers: {', '.join(trainer_names())}",
    )


def _metric_fields(spec: StudySpec) -> list[tuple[str, str]]:
    """Every (field, metric) the definition optimizes or constrains."""
    named = [("objective.metric", spec.objective.metric)]
    named += [(f"objectives.{i}.metric", o.metric) for i, o in enumerate(spec.objectives or [])]
    named += [(f"constraints.{i}.metric", c.metric) for i, c in enumerate(spec.constraints)]
    return named


def _check_metric_names(spec: StudySpec, trainer: Trainer) -> list[FieldError]:
    return [
        FieldError(
            field,
            f"trainer {trainer.name} does not report '{metric}'; "
            f"it reports: {', '.join(trainer.metrics)}",
        )
        for field, metric in _metric_fields(spec)
        if metric not in trainer.metrics
    ]


def _check_metrics_given(spec: StudySpec, trainer: Trainer) -> list[FieldError]:
    """A metric the trainer knows may still be absent under these params (e.g. IS without a
    classifier); a study on it would have nothing to optimize."""
    reported = trainer.reported_metrics(trainer.parse_params(spec.params))
    return [
        FieldError(
            field,
            f"with these params trainer {trainer.name} gives no value of '{metric}' "
            f"({trainer.metrics[metric].description})",
        )
        for field, metric in _metric_fields(spec)
        if metric in trainer.metrics and metric not in reported
    ]


MAX_INTEGER = 2**63 - 1
"""Largest integer a definition may hold (a 64-bit integer: what databases and numpy take)."""


def _check_document(spec: StudySpec, settings: Settings) -> list[FieldError]:
    """Depth, string lengths and numbers over the whole definition (params may hold
    anything), walked without recursion. Only the first of each kind is reported."""
    errors: dict[str, FieldError] = {}
    stack: list[tuple[str, Any, int]] = [("", spec.model_dump(), 0)]
    while stack:
        path, value, depth = stack.pop()
        if depth > settings.max_nesting_depth:
            problem: tuple[str, str] | None = (
                "deep",
                f"nests deeper than {settings.max_nesting_depth} levels "
                "(GENTUNE_MAX_NESTING_DEPTH)",
            )
        else:
            problem = _value_problem(value, settings)
            stack.extend(_children(path, value, depth))
        if problem is not None and problem[0] not in errors:
            errors[problem[0]] = FieldError(path or "body", problem[1])
    return list(errors.values())


def _children(path: str, value: Any, depth: int) -> list[tuple[str, Any, int]]:
    if isinstance(value, dict):
        return [
            (f"{path}.{key}" if path else str(key), item, depth + 1) for key, item in value.items()
        ]
    if isinstance(value, list | tuple):
        return [(f"{path}.{i}", item, depth + 1) for i, item in enumerate(value)]
    return []


def _value_problem(value: Any, settings: Settings) -> tuple[str, str] | None:
    """What is wrong with one value of a definition, by kind, or None."""
    limit = settings.max_string_length
    if isinstance(value, dict):
        longest = max((len(str(key)) for key in value), default=0)
        if longest > limit:
            return "long", f"has a key of {longest:,} characters; " + _string_limit(settings)
    elif isinstance(value, str) and len(value) > limit:
        return "long", f"is {len(value):,} characters long; " + _string_limit(settings)
    elif isinstance(value, float) and not math.isfinite(value):
        return "non-finite", (
            f"is {value}: only finite numbers are allowed (JSON cannot carry NaN or "
            "infinity, and no trainer can use one)"
        )
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        return "huge", (
            f"is an integer of {len(str(abs(value)))} digits; at most {MAX_INTEGER:,} in "
            "size is allowed"
        )
    return None


def _string_limit(settings: Settings) -> str:
    return f"at most {settings.max_string_length:,} are allowed (GENTUNE_MAX_STRING_LENGTH)"


def _check_sample_counts(spec: StudySpec, settings: Settings) -> list[FieldError]:
    """Params named ``*samples`` (images generated and scored per evaluation) are bounded:
    a typo of three zeros must not tie a GPU up for hours."""
    limit = settings.max_eval_samples
    errors: list[FieldError] = []
    for name, value in spec.params.items():
        if name.endswith("samples") and isinstance(value, int | float) and value > limit:
            errors.append(
                FieldError(
                    f"params.{name}",
                    f"is {value:,}; at most {limit:,} samples per evaluation are allowed "
                    "(GENTUNE_MAX_EVAL_SAMPLES)",
                )
            )
    for name, dist in spec.search_space.items():
        if not name.endswith("samples"):
            continue
        if isinstance(dist, CategoricalParam):
            values = [c for c in dist.choices if isinstance(c, int | float)]
            field = f"search_space.{name}.choices"
        else:
            values, field = [dist.high], f"search_space.{name}.high"
        if values and max(values) > limit:
            errors.append(
                FieldError(
                    field,
                    f"reaches {max(values):,}; at most {limit:,} samples per evaluation are "
                    "allowed (GENTUNE_MAX_EVAL_SAMPLES)",
                )
            )
    return errors


def resolved_definition(
    spec: StudySpec, trainer: Trainer, default_timeout_s: float | None = None
) -> dict[str, Any]:
    """The definition as stored: the sampler, the pruner and the stability rules in force
    written out in full (the trainer's defaults merged with the study's own), and the time
    budget (``default_timeout_s`` where the study sets none), so what runs is what is shown."""
    rules = resolve_rules(spec.stability, trainer)
    budget = spec.budget
    if budget.timeout_s is None and default_timeout_s:
        budget = budget.model_copy(update={"timeout_s": default_timeout_s})
    resolved = spec.model_copy(
        update={
            "sampler": sampler_for(spec, trainer),
            "pruner": pruner_for(spec, trainer),
            "stability": StabilitySpec(defaults=False, rules=rules),
            "budget": budget,
        }
    )
    stored = resolved.model_dump(mode="json")
    _check_stored(stored)
    return stored


def _check_stored(stored: dict[str, Any]) -> None:
    """The definition as it will be stored must read back as the same valid definition:
    what a worker runs is what was checked (a value JSON cannot carry would come back as
    something else, or not at all)."""
    try:
        json.dumps(stored, allow_nan=False)
        StudySpec.model_validate(stored)
    except (ValueError, ValidationError) as exc:
        errors = (
            field_errors_from_pydantic(exc.errors(), stored)
            if isinstance(exc, ValidationError)
            else [FieldError("body", f"cannot be stored as JSON: {exc}")]
        )
        raise InvalidInput(errors) from exc


def _check_stability(spec: StudySpec, trainer: Trainer) -> list[FieldError]:
    """Every metric a listed rule names must be one the trainer reports. (Some are reported
    only under some params, e.g. stability/d_accuracy not for WGAN critics; a rule whose
    metric is absent from an evaluation does not fire.)"""
    errors: list[FieldError] = []
    for i, rule in enumerate(spec.stability.rules):
        for path, metric in rule_metrics(rule):
            if metric not in trainer.metrics:
                errors.append(
                    FieldError(
                        f"stability.rules.{i}.{path}",
                        f"{rule.type} needs '{metric}', which trainer {trainer.name} does not "
                        f"report; it reports: {', '.join(trainer.metrics)}",
                    )
                )
    return errors


def _check_params(spec: StudySpec, trainer: Trainer) -> list[FieldError]:
    """Fixed params and searched ranges against the trainer's param model: names it has,
    values it accepts, and ranges of the type it takes whose every value it accepts."""
    fields = trainer.Params.model_fields
    errors = [
        FieldError(
            f"{section}.{name}",
            f"trainer {trainer.name} has no parameter '{name}'; it takes: {', '.join(fields)}",
        )
        for section, names in (("params", spec.params), ("search_space", spec.search_space))
        for name in names
        if name not in fields
    ]
    if errors:
        return errors
    try:
        trainer.Params.model_validate(spec.params)
    except ValidationError as exc:
        # Every field is named, so that an error about a defaulted one keeps its name.
        body = {**dict.fromkeys(fields), **spec.params}
        return field_errors_from_pydantic(exc.errors(), body, prefix=("params",))
    properties = trainer.Params.model_json_schema().get("properties", {})
    return [
        error
        for name, dist in spec.search_space.items()
        for error in _check_range(spec, trainer, name, dist, _json_type(properties.get(name, {})))
    ]


def _check_range(
    spec: StudySpec, trainer: Trainer, name: str, dist: ParamSpec, kind: str
) -> list[FieldError]:
    """One searched param: a range of the type the param takes, every end or choice valid."""
    where = f"search_space.{name}"
    if isinstance(dist, FloatParam) and kind != "number":
        return [_wrong_range(where, name, kind, "a float range")]
    if isinstance(dist, IntParam) and kind not in ("integer", "number"):
        return [_wrong_range(where, name, kind, "an integer range")]
    errors = []
    for label, value in _probe_values(dist):
        try:
            trainer.Params.model_validate({**spec.params, name: value})
        except ValidationError as exc:
            message = "; ".join(
                str(e.get("msg", "")).removeprefix("Value error, ")
                for e in exc.errors()
                if tuple(e.get("loc", ()))[:1] == (name,)
            )
            if message:
                errors.append(
                    FieldError(f"{where}.{label}", f"{value!r} is not a valid {name}: {message}")
                )
    return errors


def _wrong_range(where: str, name: str, kind: str, given: str) -> FieldError:
    return FieldError(
        f"{where}.type",
        f"'{name}' takes {_kind_words(kind)}, not {given}; use " + _suggested_type(kind),
    )


def _probe_values(dist: ParamSpec) -> list[tuple[str, Any]]:
    """The values that must all be valid for every suggestion from ``dist`` to be valid."""
    if isinstance(dist, CategoricalParam):
        return [(f"choices.{i}", choice) for i, choice in enumerate(dist.choices)]
    return [("low", dist.low), ("high", dist.high)]


def _json_type(prop: dict[str, Any]) -> str:
    if "type" in prop:
        return str(prop["type"])
    if "enum" in prop or "const" in prop:
        return "enum"
    kinds = {str(p.get("type")) for p in prop.get("anyOf", []) if p.get("type") != "null"}
    return kinds.pop() if len(kinds) == 1 else "any"


def _kind_words(kind: str) -> str:
    return {
        "integer": "whole numbers",
        "boolean": "true or false",
        "string": "text",
        "enum": "one of a fixed set of values",
    }.get(kind, f"values of type {kind}")


def _suggested_type(kind: str) -> str:
    return "type: int" if kind == "integer" else "type: categorical with choices"


def _check_grid(spec: StudySpec, settings: Settings) -> list[FieldError]:
    """A grid study's space must be a finite grid of a size the service allows."""
    if spec.sampler.type != "grid":
        return []
    errors: list[FieldError] = []
    if not spec.search_space:
        return [FieldError("search_space", "a grid search needs at least one searched parameter")]
    counts: dict[str, int] = {}
    for name, dist in spec.search_space.items():
        count = grid_count(dist)
        if count is None:
            errors.append(
                FieldError(
                    f"search_space.{name}",
                    "a grid search needs a step on "
                    "float ranges (and no log scale), or categorical choices",
                )
            )
        else:
            counts[name] = count
    if errors:
        return errors
    points = math.prod(counts.values())
    if points > settings.max_grid_points:
        sizes = " × ".join(f"{name} {count:,}" for name, count in counts.items())
        errors.append(
            FieldError(
                "search_space",
                f"the grid has {points:,} points ({sizes}); at most "
                f"{settings.max_grid_points:,} are allowed (GENTUNE_MAX_GRID_POINTS): "
                "use larger steps or fewer choices, or a sampler such as tpe",
            )
        )
    return errors


LIMIT_CHECKS: tuple[SpecCheck, ...] = (_check_sizes, _check_sample_counts)
TRAINER_CHECKS_WITHOUT_PARAMS: tuple[TrainerCheck, ...] = (_check_metric_names,)
TRAINER_CHECKS: tuple[TrainerCheck, ...] = (
    *TRAINER_CHECKS_WITHOUT_PARAMS,
    _check_metrics_given,
    _check_stability,
)
