"""Study logic between the routes and the repository: checks against the trainer, views."""

from __future__ import annotations

import json
import math
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import TypeAdapter, ValidationError

from gentune.service.artifacts import is_checkpoint, media_type
from gentune.service.baseline import describe_baseline
from gentune.service.config import Settings
from gentune.service.db.models import Study, Trial
from gentune.service.db.repository import Repository
from gentune.service.errors import FieldError, InvalidInput, NotFound, field_errors_from_pydantic
from gentune.service.pareto import pareto_front
from gentune.service.scheduling.stability import resolve_rules, rule_metrics
from gentune.service.schemas.api import (
    ArtifactOut,
    BestOut,
    BestSoFar,
    MetricPoint,
    ParetoPoint,
    StudyOut,
    Threshold,
    TrialCounts,
    TrialDetail,
    TrialOut,
)
from gentune.service.schemas.study import (
    CategoricalParam,
    DiscriminatorCollapseRule,
    DivergenceRule,
    FloatParam,
    GradientExplosionRule,
    IntParam,
    ModeCollapseRule,
    ParamSpec,
    PrunerSpec,
    SamplerSpec,
    StabilityRule,
    StabilitySpec,
    StudySpec,
)
from gentune.service.warm_start import check_points
from gentune.trainers.base import Trainer
from gentune.trainers.registry import get_trainer, trainer_names


def validate_spec(spec: StudySpec, settings: Settings) -> Trainer:
    """Check ``spec`` against its trainer and the service's limits; raise ``InvalidInput``.

    Returns the trainer so callers need not look it up again.
    """
    errors: list[FieldError] = _check_document(spec, settings)
    if errors:
        raise InvalidInput(errors)  # nothing else is worth checking in an oversized document
    if len(spec.search_space) > settings.max_search_space_params:
        errors.append(
            FieldError(
                "search_space",
                f"searches {len(spec.search_space)} parameters; at most "
                f"{settings.max_search_space_params} are allowed (GENTUNE_MAX_SEARCH_SPACE_PARAMS)",
            )
        )
    errors += _check_sample_counts(spec, settings)
    if spec.budget.n_trials > settings.max_trials:
        errors.append(
            FieldError(
                "budget.n_trials",
                f"at most {settings.max_trials} trials per study, got {spec.budget.n_trials}",
            )
        )
    if spec.budget.max_concurrent > settings.max_concurrent:
        errors.append(
            FieldError(
                "budget.max_concurrent",
                f"at most {settings.max_concurrent} trials at once, "
                f"got {spec.budget.max_concurrent}",
            )
        )
    trainer = get_trainer(spec.trainer)
    if trainer is None:
        errors.append(
            FieldError(
                "trainer",
                f"no trainer is registered as '{spec.trainer}'; "
                f"registered trainers: {', '.join(trainer_names())}",
            )
        )
        raise InvalidInput(errors)
    param_errors = _check_params(spec, trainer)
    errors += param_errors
    reported = None if param_errors else trainer.reported_metrics(trainer.parse_params(spec.params))
    named = [("objective.metric", spec.objective.metric)]
    named += [(f"objectives.{i}.metric", o.metric) for i, o in enumerate(spec.objectives or [])]
    named += [(f"constraints.{i}.metric", c.metric) for i, c in enumerate(spec.constraints)]
    for field, metric in named:
        if metric not in trainer.metrics:
            errors.append(
                FieldError(
                    field,
                    f"trainer {trainer.name} does not report "
                    f"'{metric}'; it reports: {', '.join(trainer.metrics)}",
                )
            )
        elif reported is not None and metric not in reported:
            errors.append(
                FieldError(
                    field,
                    f"with these params trainer {trainer.name} gives no value of '{metric}' "
                    f"({trainer.metrics[metric].description})",
                )
            )
    if spec.sampler.type == "grid":
        errors += _check_grid(spec, settings)
    errors += check_points(spec)
    if not param_errors:
        errors += _check_stability(spec, trainer)
    if errors:
        raise InvalidInput(errors)
    return trainer


MAX_INTEGER = 2**63 - 1
"""Largest integer a definition may hold (a 64-bit integer: what databases and numpy take)."""


def _check_document(spec: StudySpec, settings: Settings) -> list[FieldError]:
    """Depth, string lengths and numbers over the whole definition (params may hold
    anything), walked without recursion. Only the first of each kind is reported."""
    errors: list[FieldError] = []
    found: set[str] = set()

    def report(kind: str, path: str, message: str) -> None:
        if kind not in found:
            found.add(kind)
            errors.append(FieldError(path or "body", message))

    stack: list[tuple[str, Any, int]] = [("", spec.model_dump(), 0)]
    while stack:
        path, value, depth = stack.pop()
        if depth > settings.max_nesting_depth:
            report(
                "deep",
                path,
                f"nests deeper than {settings.max_nesting_depth} levels "
                "(GENTUNE_MAX_NESTING_DEPTH)",
            )
            continue
        if isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if len(str(key)) > settings.max_string_length:
                    report(
                        "long",
                        path,
                        f"has a key of {len(str(key)):,} characters; " + _string_limit(settings),
                    )
                stack.append((child, item, depth + 1))
        elif isinstance(value, list | tuple):
            stack.extend((f"{path}.{i}", item, depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str) and len(value) > settings.max_string_length:
            report("long", path, f"is {len(value):,} characters long; " + _string_limit(settings))
        elif isinstance(value, float) and not math.isfinite(value):
            report(
                "non-finite",
                path,
                f"is {value}: only finite numbers are allowed (JSON cannot carry NaN or "
                "infinity, and no trainer can use one)",
            )
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
            report(
                "huge",
                path,
                f"is an integer of {len(str(abs(value)))} digits; at most {MAX_INTEGER:,} in "
                "size is allowed",
            )
    return errors


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


PRUNER_ADAPTER: TypeAdapter[PrunerSpec] = TypeAdapter(PrunerSpec)


def pruner_for(spec: StudySpec, trainer: Trainer) -> PrunerSpec:
    """The study's pruner, or the trainer's default (``pruner_defaults``), or median."""
    if spec.pruner is not None:
        return spec.pruner
    return PRUNER_ADAPTER.validate_python(trainer.pruner_defaults or {"type": "median"})


SAMPLER_ADAPTER: TypeAdapter[SamplerSpec] = TypeAdapter(SamplerSpec)


def sampler_for(spec: StudySpec, trainer: Trainer) -> SamplerSpec:
    """The study's sampler, or the trainer's default (``sampler_defaults``) when the
    definition names none, or gentune's (``StudySpec.sampler``'s default)."""
    if "sampler" in spec.model_fields_set or trainer.sampler_defaults is None:
        return spec.sampler
    return SAMPLER_ADAPTER.validate_python(dict(trainer.sampler_defaults))


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
    fields = trainer.Params.model_fields
    properties = trainer.Params.model_json_schema().get("properties", {})
    errors: list[FieldError] = []
    for section, names in (("params", spec.params), ("search_space", spec.search_space)):
        for name in names:
            if name not in fields:
                errors.append(
                    FieldError(
                        f"{section}.{name}",
                        f"trainer {trainer.name} has no "
                        f"parameter '{name}'; it takes: {', '.join(fields)}",
                    )
                )
    if errors:
        return errors

    try:
        trainer.Params.model_validate(spec.params)
    except ValidationError as exc:
        # Every field is named, so that an error about a defaulted one keeps its name.
        body = {**dict.fromkeys(fields), **spec.params}
        errors += field_errors_from_pydantic(exc.errors(), body, prefix=("params",))
        return errors

    for name, dist in spec.search_space.items():
        kind = _json_type(properties.get(name, {}))
        where = f"search_space.{name}"
        if isinstance(dist, FloatParam) and kind != "number":
            errors.append(
                FieldError(
                    f"{where}.type",
                    f"'{name}' takes {_kind_words(kind)}, "
                    "not a float range; use " + _suggested_type(kind),
                )
            )
            continue
        if isinstance(dist, IntParam) and kind not in ("integer", "number"):
            errors.append(
                FieldError(
                    f"{where}.type",
                    f"'{name}' takes {_kind_words(kind)}, "
                    "not an integer range; use " + _suggested_type(kind),
                )
            )
            continue
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
                        FieldError(
                            f"{where}.{label}", f"{value!r} is not a valid {name}: {message}"
                        )
                    )
    return errors


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


def grid_size(spec: StudySpec) -> int:
    """Points on the grid a grid study spans (every param must have grid values)."""
    return math.prod(grid_count(dist) or 0 for dist in spec.search_space.values())


def grid_count(dist: ParamSpec) -> int | None:
    """How many values ``dist`` has on a grid (counted, never listed), or None when it has no
    finite grid."""
    if isinstance(dist, CategoricalParam):
        return len(dist.choices)
    if dist.log or dist.step is None:
        return None
    if isinstance(dist, IntParam):
        return (dist.high - dist.low) // dist.step + 1
    return math.floor((dist.high - dist.low) / dist.step + 1e-9) + 1


def grid_values(dist: ParamSpec) -> list[Any] | None:
    """Every value of ``dist`` on a grid, or None when it has no finite grid. Call it on a
    validated study only: validation bounds the grid's size."""
    count = grid_count(dist)
    if count is None:
        return None
    if isinstance(dist, CategoricalParam):
        return list(dist.choices)
    if isinstance(dist, IntParam):
        return list(range(dist.low, dist.high + 1, dist.step))
    assert dist.step is not None
    return [dist.low + i * dist.step for i in range(count)]


def distribution(spec: ParamSpec) -> BaseDistribution:
    """The Optuna distribution a search-space entry stands for."""
    if isinstance(spec, CategoricalParam):
        return CategoricalDistribution(spec.choices)
    if isinstance(spec, FloatParam):
        return FloatDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
    return IntDistribution(spec.low, spec.high, log=spec.log, step=spec.step)


# --- views of stored studies ---------------------------------------------------------------


def api_url(base_url: str, path: str) -> str:
    return f"{base_url}/api/v1{path}"


def describe_study(repo: Repository, study: Study, base_url: str) -> StudyOut:
    objective = study.spec["objective"]
    best = repo.best_trial(study.id, objective["direction"])
    return StudyOut(
        id=study.id,
        name=study.name,
        trainer=study.trainer,
        state=study.state,  # type: ignore[arg-type]
        state_reason=study.state_reason,
        cancel_requested=study.cancel_requested,
        worker_id=study.worker_id,
        heartbeat_at=study.heartbeat_at,
        claims=study.claims,
        submitted_by=study.submitted_by,
        cancelled_by=study.cancelled_by,
        objective=objective,
        n_trials=study.spec["budget"]["n_trials"],
        trial_counts=TrialCounts(**repo.trial_counts(study.id)),
        best=BestSoFar(trial_id=best.id, number=best.number, value=best.value)
        if best is not None and best.value is not None
        else None,
        baseline=describe_baseline(repo, study, best),
        optuna_study_name=study.optuna_study_name,
        created_at=study.created_at,
        started_at=study.started_at,
        finished_at=study.finished_at,
        definition=study.spec,
        url=api_url(base_url, f"/studies/{study.id}"),
        page_url=f"{base_url}/studies/{study.id}",
    )


def describe_trial(trial: Trial) -> TrialOut:
    return TrialOut.model_validate(trial, from_attributes=True)


def trial_detail(repo: Repository, trial: Trial, base_url: str) -> TrialDetail:
    history: dict[str, list[MetricPoint]] = {}
    for metric in repo.metrics_of_trial(trial.id):
        history.setdefault(metric.name, []).append(
            MetricPoint(step=metric.step, value=metric.value)
        )
    artifacts = describe_artifacts(repo, trial.id, base_url)
    study = repo.get_study(trial.study_id)
    return TrialDetail(
        **describe_trial(trial).model_dump(),
        config=full_config(study, trial),
        metrics=history,
        thresholds=thresholds(study),
        page_url=f"{base_url}/trials/{trial.id}",
        checkpoints=[a for a in artifacts if is_checkpoint(a.kind)],
        samples=sorted(
            (a for a in artifacts if a.kind.startswith("samples-")), key=lambda a: a.step
        ),
    )


def full_config(study: Study, trial: Trial) -> dict[str, Any]:
    """Every param the trial ran with: fixed, searched, and the trainer's defaults for the
    rest (the seed among them), so the record reproduces the run. Without the trainer
    installed here (a plugin only on the workers), the fixed and searched params."""
    given = {**study.spec.get("params", {}), **trial.params}
    trainer = get_trainer(study.trainer)
    if trainer is None:
        return given
    try:
        return trainer.parse_params(given).model_dump(mode="json")
    except ValidationError:
        return given


def describe_artifacts(repo: Repository, trial_id: int, base_url: str) -> list[ArtifactOut]:
    return [
        ArtifactOut(
            kind=a.kind,
            step=a.step,
            size_bytes=a.size_bytes,
            media_type=media_type(a.path),
            url=api_url(base_url, f"/trials/{trial_id}/artifacts/{a.kind}"),
        )
        for a in repo.artifacts_of_trial(trial_id)
    ]


def best_of_study(repo: Repository, study: Study, base_url: str) -> BestOut:
    best = repo.best_trial(study.id, study.spec["objective"]["direction"])
    if best is None or best.value is None:
        raise NotFound(f"Study {study.id} has no completed trial yet ({study.state}).")
    has_checkpoint = any(a.kind == "best" for a in repo.artifacts_of_trial(best.id))
    return BestOut(
        study_id=study.id,
        trial_id=best.id,
        number=best.number,
        value=best.value,
        step=best.best_step,
        params=best.params,
        config={**study.spec["params"], **best.params},
        metrics=repo.metrics_at_step(best.id, best.best_step) if best.best_step is not None else {},
        checkpoint_url=api_url(base_url, f"/trials/{best.id}/checkpoint?kind=best")
        if has_checkpoint
        else None,
        pareto=pareto_set(repo, study),
        baseline=describe_baseline(repo, study, best),
    )


def pareto_set(repo: Repository, study: Study) -> list[ParetoPoint] | None:
    objectives = study.spec.get("objectives")
    if not objectives:
        return None
    metrics = [o["metric"] for o in objectives]
    candidates = [(t, t.values) for t in repo.pareto_candidates(study.id) if t.values]
    front = pareto_front(candidates, [o["direction"] for o in objectives])
    return [
        ParetoPoint(
            trial_id=t.id,
            number=t.number,
            values=dict(zip(metrics, t.values or [], strict=True)),
            params=t.params,
        )
        for t in front
    ]


def thresholds(study: Study) -> list[Threshold]:
    """The fixed lines the study's stability rules draw on metric charts."""
    raw = study.spec.get("stability") or {"defaults": False, "rules": []}
    rules: list[StabilityRule] = StabilitySpec.model_validate(raw).rules
    lines: list[Threshold] = []
    for rule in rules:
        if not rule.enabled:
            continue
        match rule:
            case DivergenceRule():
                lines += [
                    Threshold(
                        metric=m,
                        value=rule.floor,
                        rule=rule.type,
                        label=f"divergence floor (fires above {rule.factor:g}x the running min)",
                    )
                    for m in rule.metrics
                    if rule.floor > 0
                ]
            case GradientExplosionRule():
                lines += [
                    Threshold(metric=m, value=rule.max_norm, rule=rule.type, label="gradient bound")
                    for m in rule.metrics
                ]
            case ModeCollapseRule():
                lines.append(
                    Threshold(
                        metric=rule.metric,
                        value=rule.min_ratio,
                        rule=rule.type,
                        label="mode-collapse ratio",
                    )
                )
            case DiscriminatorCollapseRule():
                lines.append(
                    Threshold(
                        metric="stability/d_accuracy",
                        value=rule.accuracy,
                        rule=rule.type,
                        label="discriminator-collapse accuracy",
                    )
                )
                if rule.d_loss_floor is not None:
                    lines.append(
                        Threshold(
                            metric="d_loss",
                            value=rule.d_loss_floor,
                            rule=rule.type,
                            label="discriminator-collapse loss floor",
                        )
                    )
    return lines
