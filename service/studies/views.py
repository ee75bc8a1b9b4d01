"""Stored studies and trials as the API returns them: summaries, details, artifacts, the
best trial and the Pareto set, thresholds for charts."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gentune.service.artifacts import is_checkpoint, media_type
from gentune.service.db.models import Study, Trial
from gentune.service.db.repository import FINISHED_STUDY_STATES, Repository, StudySummary
from gentune.service.errors import NotFound
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
    DiscriminatorCollapseRule,
    DivergenceRule,
    GradientExplosionRule,
    ModeCollapseRule,
    StabilityRule,
    StabilitySpec,
)
from gentune.service.studies.baseline import baseline_view, describe_baseline
from gentune.service.studies.charts import ViewCache
from gentune.service.studies.pareto import pareto_front
from gentune.service.studies.warm_start import BASELINE
from gentune.trainers.registry import get_trainer


def api_url(base_url: str, path: str) -> str:
    return f"{base_url}/api/v1{path}"


def study_list(
    repo: Repository,
    cache: ViewCache,
    paging: tuple[int, int],
    state: str | None,
    base_url: str,
) -> bytes:
    """A page of study summaries (``paging``: offset, limit) as the JSON of a
    ``Page[StudyOut]``. A finished study's summary is final, so it is serialized once and
    then taken from ``cache`` while its row is unchanged; the others are described afresh,
    all in the queries of one ``describe_studies``."""
    versions, count = repo.list_studies(*paging, state)
    parts: dict[int, bytes] = {}
    for v in versions:
        found = cache.peek(("study-summary", v.id, base_url), v.version)
        if found is not None:
            parts[v.id] = found[0]
    missing = [v for v in versions if v.id not in parts]
    if missing:
        studies = repo.studies_by_id([v.id for v in missing])
        fresh = {view.id: view for view in describe_studies(repo, studies, base_url)}
        for v in missing:
            if v.id not in fresh:  # deleted since the page was read
                continue
            body = fresh[v.id].model_dump_json().encode()
            parts[v.id] = body
            if fresh[v.id].state in FINISHED_STUDY_STATES:
                cache.put(("study-summary", v.id, base_url), v.version, body, "")
    data = b",".join(parts[v.id] for v in versions if v.id in parts)
    return b'{"data":[' + data + b'],"count":' + str(count).encode() + b"}"


def describe_studies(repo: Repository, studies: list[Study], base_url: str) -> list[StudyOut]:
    """Summaries of ``studies``, their trials read in one query for all of them."""
    summaries = repo.study_summaries(studies, BASELINE)
    return [summarize(study, summaries[study.id], base_url) for study in studies]


def describe_study(repo: Repository, study: Study, base_url: str) -> StudyOut:
    return describe_studies(repo, [study], base_url)[0]


def summarize(study: Study, summary: StudySummary, base_url: str) -> StudyOut:
    objective, best = study.spec["objective"], summary.best
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
        trial_counts=TrialCounts(**summary.counts),
        best=BestSoFar(trial_id=best.id, number=best.number, value=best.value)
        if best is not None and best.value is not None
        else None,
        baseline=baseline_view(study, summary.of_origin, best),
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
