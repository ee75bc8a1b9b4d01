"""Response models of the REST API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

T = TypeVar("T")


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
"""gentune stores UTC; SQLite hands datetimes back naive, so they are marked UTC on the way
out (a browser would read a naive ISO time as local time)."""


MAX_ID = 2**31 - 1
"""Largest id a study or trial can have (their ids are 32-bit INTEGER columns); a larger one
in a path is refused as invalid rather than sent to the database, which cannot compare it."""


class Page(BaseModel, Generic[T]):
    data: list[T]
    count: int = Field(description="Items matching the query, over all pages.")


class ErrorItem(BaseModel):
    field: str = Field(
        description="Dotted path of the offending field, e.g. search_space.lr_g.low."
    )
    message: str
    line: int | None = Field(
        None, description="Line of the field in a definition submitted as text, when known."
    )


class ErrorOut(BaseModel):
    detail: str
    errors: list[ErrorItem] = Field(default_factory=list)


RETRY_AFTER = {
    "description": "Seconds to wait before trying again.",
    "required": True,
    "schema": {"type": "integer"},
}
UNREACHABLE_DATABASE = "The database is unreachable (restarting or down); nothing was changed."


def error_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route for the errors it can answer, each with ErrorOut's body, so
    that its OpenAPI schema documents every status it sends (a 503 with its Retry-After)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status, description in descriptions.items():
        responses[status] = {"model": ErrorOut, "description": description}
        if status in (429, 503):
            responses[status]["headers"] = {"Retry-After": RETRY_AFTER}
    return responses


class TrialCounts(BaseModel):
    pending: int = Field(0, description="Waiting for a Ray worker with free resources.")
    running: int = 0
    completed: int = 0
    pruned: int = 0
    failed: int = 0


class BestSoFar(BaseModel):
    trial_id: int
    number: int
    value: float


class BaselineOut(BaseModel):
    """The study's first trial, the trainer's defaults, and how its best compares."""

    trial_id: int | None = Field(description="Null until the trial starts.")
    number: int | None
    state: Literal["queued", "pending", "running", "completed", "pruned", "failed"]
    value: float | None = Field(
        description="Its best objective value (for a pruned trial, up to where it stopped)."
    )
    params: dict[str, Any] = Field(description="The searched params' values it runs with.")
    adjusted: dict[str, str] = Field(
        description="Searched params whose default lies outside the space, and what was done."
    )
    reason: str | None = Field(description="Why it was pruned or failed.")
    feasible: bool | None = Field(None, description="With constraints: whether it keeps them.")
    improvement: float | None = Field(
        description="How much better the study's best is, as a fraction of the baseline's value "
        "in the objective's direction (0.09: 9% better); null without both values or at 0."
    )
    summary: str = Field(description='In words: "best 0.93, defaults 0.85 (+9%)".')


class StudyOut(BaseModel):
    id: int
    name: str
    trainer: str
    state: Literal["queued", "running", "completed", "failed", "cancelled"]
    state_reason: str | None
    cancel_requested: bool
    worker_id: str | None = Field(None, description="The worker running it (or that last did).")
    heartbeat_at: UtcDatetime | None = Field(
        None, description="Its worker's last sign of life while it runs."
    )
    claims: int = Field(
        0, description="Times a worker took it from the queue: 1, plus one per resume."
    )
    submitted_by: str | None = Field(
        None, description="The name of the token that submitted it (null without tokens)."
    )
    cancelled_by: str | None = Field(None, description="The name of the token that cancelled it.")
    objective: dict[str, str]
    n_trials: int
    trial_counts: TrialCounts
    best: BestSoFar | None
    baseline: BaselineOut | None = Field(
        None, description="The trainer's defaults as a trial; null with baseline: false."
    )
    optuna_study_name: str
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    definition: dict[str, Any]
    url: str
    page_url: str = Field(description="The study's page in the dashboard.")


class TrialOut(BaseModel):
    id: int
    study_id: int
    number: int
    state: Literal["pending", "running", "completed", "pruned", "failed"]
    params: dict[str, Any]
    value: float | None = Field(description="Best objective value over the trial's evaluations.")
    best_step: int | None
    last_step: int | None
    reason: str | None = Field(description="Why the trial was pruned or failed.")
    pruned_by: str | None = Field(
        None,
        description="What stopped a pruned trial: stability/<rule> (e.g. stability/divergence) "
        "or pruner/<type> (e.g. pruner/median).",
    )
    pruned_step: int | None = Field(None, description="The evaluation at which it was stopped.")
    prune_values: dict[str, float | str] | None = Field(
        None,
        description='The values that tripped it; non-finite ones as "nan", "inf" or "-inf".',
    )
    node: str | None = Field(description="Host name of the machine the trial ran on.")
    ray_node_id: str | None = Field(
        None, description="The Ray node it ran on (several can share a host)."
    )
    gpu_ids: str | None = Field(
        None, description="GPUs Ray assigned to it, comma-separated; empty when none."
    )
    attempts: int = Field(
        1, description="1, plus one for each restart after its Ray worker or node died."
    )
    values: list[float] | None = Field(
        None,
        description="A multi-objective study's objective values, in its objectives' order, at "
        "the evaluation where the primary objective was best.",
    )
    feasible: bool | None = Field(
        None,
        description="With constraints: whether the trial keeps them (at that evaluation); an "
        "infeasible trial is never the best. Null in a study without constraints.",
    )
    rating_mean: float | None = Field(
        None, description="Mean of the 1-5 scores people gave its samples; null until one does."
    )
    rating_count: int = Field(0, description="How many scores it was given.")
    wins: int = Field(0, description="Times a person picked its samples over another trial's.")
    losses: int = Field(0, description="Times a person picked another trial's over its own.")
    origin: str | None = Field(
        None,
        description="Where a config given in advance came from (points_to_evaluate[i], warm "
        "start: study S trial T); null for the sampler's own suggestions.",
    )
    run_info: dict[str, str] = Field(
        description="Facts about the run: dataset and its fingerprint, device, versions."
    )
    created_at: UtcDatetime
    started_at: UtcDatetime | None = Field(
        None, description="When its current attempt began training (after waiting for resources)."
    )
    finished_at: UtcDatetime | None


class Threshold(BaseModel):
    """A fixed line a stability rule draws on one metric's chart."""

    metric: str
    value: float
    rule: str
    label: str


class MetricPoint(BaseModel):
    step: int
    value: float | None = Field(description="null stands for NaN.")


class ArtifactOut(BaseModel):
    kind: str = Field(description="best or last (checkpoints), samples-STEP (a PNG grid).")
    step: int
    size_bytes: int
    media_type: str
    url: str


class TrialDetail(TrialOut):
    config: dict[str, Any] = Field(description="The study's fixed params with this trial's.")
    metrics: dict[str, list[MetricPoint]]
    thresholds: list[Threshold] = Field(
        default_factory=list, description="Lines the study's stability rules draw on metrics."
    )
    page_url: str = Field(description="The trial's page in the dashboard.")
    checkpoints: list[ArtifactOut]
    samples: list[ArtifactOut] = Field(description="Sample grids, one per evaluation, by step.")


class ManifestOut(BaseModel):
    """Everything needed to run a trial again and check it: ``gentune reproduce`` reads it."""

    format: Literal["gentune-manifest/1"] = "gentune-manifest/1"
    trial_id: int
    study_id: int
    number: int
    state: Literal["pending", "running", "completed", "pruned", "failed"]
    trainer: str
    config: dict[str, Any] = Field(description="Every param, the trainer's defaults included.")
    seed: int | None = Field(description="The config's seed, where the trainer has one.")
    objective: dict[str, str]
    run_info: dict[str, str] = Field(
        description="Dataset and its fingerprint, device, torch threads, versions, git commit."
    )
    metrics: dict[str, list[MetricPoint]] = Field(description="Every metric at every step.")


class RatingIn(BaseModel):
    """A score of the trial's samples, or a pick of them over another trial's (one of the
    two per rating)."""

    model_config = ConfigDict(extra="forbid")

    score: int | None = Field(None, ge=1, le=5, description="1 (poor) to 5 (excellent).")
    better_than: int | None = Field(
        None, ge=1, le=MAX_ID, description="A trial of the same study whose samples look worse."
    )


class RatingOut(BaseModel):
    id: int
    trial_id: int = Field(description="The trial rated (with better_than: the one picked).")
    score: int | None
    better_than: int | None
    rater: str = Field(description="The token's name; anonymous on a service without tokens.")
    created_at: UtcDatetime


class ParetoPoint(BaseModel):
    trial_id: int
    number: int
    values: dict[str, float] = Field(description="Each objective's value, by metric.")
    params: dict[str, Any]


class BestOut(BaseModel):
    study_id: int
    trial_id: int
    number: int
    value: float
    step: int | None
    params: dict[str, Any] = Field(description="The searched params of the best trial.")
    config: dict[str, Any] = Field(
        description="Fixed and searched params together: the full config."
    )
    metrics: dict[str, float | None] = Field(description="Every metric at the best step.")
    checkpoint_url: str | None
    baseline: BaselineOut | None = Field(
        None, description="The trainer's defaults as a trial; null with baseline: false."
    )
    pareto: list[ParetoPoint] | None = Field(
        None,
        description="A multi-objective study's Pareto set: the completed, feasible trials no "
        "other beats on every objective (the fields above give the best by the primary one).",
    )


class MetricInfo(BaseModel):
    name: str
    description: str
    direction: Literal["minimize", "maximize"] | None


class TrainerOut(BaseModel):
    name: str
    description: str
    params_schema: dict[str, Any]
    metrics: list[MetricInfo]


class HealthOut(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]
    version: str


# --- aggregates for dashboards (computed server-side, cached per study revision) ----------


class TrialColumns(BaseModel):
    """Every trial of a study, one list per field, in trial-number order: enough for a
    best-so-far curve and a parallel-coordinates plot without one request per trial."""

    study_id: int
    revision: str = Field(description="Changes whenever a trial starts, reports or finishes.")
    objective: dict[str, str]
    trial_id: list[int]
    number: list[int]
    state: list[str]
    value: list[float | None]
    best_so_far: list[float | None] = Field(
        description="Best value of the completed, feasible trials up to each trial (the "
        "study's progress)."
    )
    pruned_by: list[str | None]
    last_step: list[int | None]
    objectives: list[dict[str, str]] = Field(
        description="Every objective, in order (one, the objective, in a single-objective study)."
    )
    values: list[list[float] | None] = Field(
        description="A multi-objective study's objective values per trial (else nulls)."
    )
    feasible: list[bool | None] = Field(description="Per trial, with constraints (else nulls).")
    params: dict[str, list[Any]] = Field(description="Each searched param's value per trial.")


class Curve(BaseModel):
    trial_id: int
    number: int
    state: str
    reason: str | None
    pruned_by: str | None
    pruned_step: int | None
    steps: list[int]
    values: list[float | None] = Field(description="null stands for NaN.")


class CurvesOut(BaseModel):
    """One metric over steps for a chosen few trials: the best by value and the latest."""

    study_id: int
    revision: str
    metric: str
    total_trials: int = Field(description="Trials in the study; the curves cover a subset.")
    trials: list[Curve]


class ImportancesOut(BaseModel):
    study_id: int
    revision: str
    method: str = Field(description="The Optuna importance evaluator used.")
    n_trials: int = Field(description="Completed trials the importances were computed on.")
    importances: dict[str, float] = Field(description="Param name to importance, summing to 1.")
    note: str | None = Field(None, description="Why importances are empty, when they are.")
