"""Response models of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    count: int = Field(description="Items matching the query, over all pages.")


class ErrorItem(BaseModel):
    field: str = Field(
        description="Dotted path of the offending field, e.g. search_space.lr_g.low."
    )
    message: str


class ErrorOut(BaseModel):
    detail: str
    errors: list[ErrorItem] = Field(default_factory=list)


class TrialCounts(BaseModel):
    running: int = 0
    completed: int = 0
    pruned: int = 0
    failed: int = 0


class BestSoFar(BaseModel):
    trial_id: int
    number: int
    value: float


class StudyOut(BaseModel):
    id: int
    name: str
    trainer: str
    state: Literal["queued", "running", "completed", "failed", "cancelled"]
    state_reason: str | None
    cancel_requested: bool
    objective: dict[str, str]
    n_trials: int
    trial_counts: TrialCounts
    best: BestSoFar | None
    optuna_study_name: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    definition: dict[str, Any]
    url: str


class TrialOut(BaseModel):
    id: int
    study_id: int
    number: int
    state: Literal["running", "completed", "pruned", "failed"]
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
    node: str | None
    run_info: dict[str, str] = Field(
        description="Facts about the run: dataset and its fingerprint, device, versions."
    )
    created_at: datetime
    finished_at: datetime | None


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
    metrics: dict[str, list[MetricPoint]]
    checkpoints: list[ArtifactOut]
    samples: list[ArtifactOut] = Field(description="Sample grids, one per evaluation, by step.")


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
