"""The tables: studies, their trials, every metric of every evaluation, and artifacts."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gentune.service.db.base import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


class StudyState(enum.StrEnum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


class TrialState(enum.StrEnum):
    pending = "pending"
    """Suggested and handed to Ray, waiting for a worker with free resources."""
    running = "running"
    completed = "completed"
    pruned = "pruned"
    failed = "failed"


ACTIVE_TRIAL_STATES = (TrialState.pending, TrialState.running)
"""A trial not finished yet: waiting for resources or training."""

WORKER_LOST = "worker lost"
"""The reason given to a trial whose worker died under it; such trials do not use up budget."""


@dataclass(frozen=True)
class PruneRecord:
    """What stopped a pruned trial: ``stability/<rule>`` or ``pruner/<type>``, at which
    step, on which values."""

    by: str
    step: int
    values: dict[str, float]


class Study(Base):
    __tablename__ = "gentune_studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    trainer: Mapped[str] = mapped_column(String(100))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default=StudyState.queued, index=True)
    state_reason: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    optuna_study_name: Mapped[str] = mapped_column(String(200), unique=True)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    submitted_by: Mapped[str | None] = mapped_column(String(64))
    """The name of the token that submitted it (None on a service without tokens)."""
    cancelled_by: Mapped[str | None] = mapped_column(String(64))
    """How many times a worker has taken the study from the queue (1 + resumes)."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    trials: Mapped[list[Trial]] = relationship(back_populates="study", cascade="all, delete-orphan")


class Trial(Base):
    __tablename__ = "gentune_trials"
    __table_args__ = (UniqueConstraint("study_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(
        ForeignKey("gentune_studies.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    """The Optuna trial number within the study."""
    tune_trial_id: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16), default=TrialState.pending, index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    value: Mapped[float | None] = mapped_column(Float)
    """Best objective value over the trial's evaluations."""
    best_step: Mapped[int | None] = mapped_column(Integer)
    last_step: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    """Why it was pruned or failed, in words."""
    pruned_by: Mapped[str | None] = mapped_column(String(100), index=True)
    """``stability/<rule>`` or ``pruner/<type>``: what stopped a pruned trial."""
    pruned_step: Mapped[int | None] = mapped_column(Integer)
    prune_values: Mapped[dict[str, float | str] | None] = mapped_column(JSON)
    """The values that tripped the rule or pruner; non-finite ones as "nan", "inf", "-inf"."""
    node: Mapped[str | None] = mapped_column(String(200))
    """Host name of the machine the trial ran on."""
    ray_node_id: Mapped[str | None] = mapped_column(String(64))
    """The Ray node it ran on (several nodes can share a host)."""
    gpu_ids: Mapped[str | None] = mapped_column(String(200))
    """The GPUs Ray gave it, comma-separated; empty when it had none."""
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    """1, plus one for each time Ray restarted it after its worker or node died."""
    values: Mapped[list[float] | None] = mapped_column(JSON)
    """A multi-objective study's objective values, in its order, at the primary's best step."""
    feasible: Mapped[bool | None] = mapped_column(Boolean)
    """With constraints: whether the trial keeps them at that step; null without any."""
    rating_mean: Mapped[float | None] = mapped_column(Float)
    """Mean of the 1-5 scores people gave its samples; null until one does."""
    rating_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    wins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Times a person picked its samples over another trial's."""
    losses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    origin: Mapped[str | None] = mapped_column(String(200))
    """Where a config given in advance came from (``points_to_evaluate[0]``, ``warm start:
    study 3 trial 17``); null for the sampler's own suggestions."""
    run_info: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    """Facts about the run that are not metrics: dataset fingerprint, device, versions."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When its current attempt began training on a Ray worker (after any wait for resources:
    null while ``pending``); its run time counts from here."""
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    study: Mapped[Study] = relationship(back_populates="trials")


class Metric(Base):
    """One value of one metric at one evaluation step; NULL stands for NaN."""

    __tablename__ = "gentune_metrics"
    __table_args__ = (
        UniqueConstraint("trial_id", "name", "step"),
        Index("ix_gentune_metrics_trial_step", "trial_id", "step"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("gentune_trials.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Rating(Base):
    """A person's judgement of a trial's samples: a score of 1-5, or that they are better
    than another trial's of the same study."""

    __tablename__ = "gentune_ratings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(
        ForeignKey("gentune_trials.id", ondelete="CASCADE"), index=True
    )
    score: Mapped[int | None] = mapped_column(Integer)
    better_than: Mapped[int | None] = mapped_column(
        ForeignKey("gentune_trials.id", ondelete="CASCADE")
    )
    rater: Mapped[str] = mapped_column(String(64))
    """The name of the token that rated (``anonymous`` on a service without tokens)."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Artifact(Base):
    """A file in the artifact store belonging to a trial (its best and last checkpoints)."""

    __tablename__ = "gentune_artifacts"
    __table_args__ = (UniqueConstraint("trial_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(
        ForeignKey("gentune_trials.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(500))
    """Relative to the artifact store's root."""
    step: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Meta(Base):
    """Facts about the database itself, by key: ``database_id`` names it (a random id made
    when its tables are), so that an artifact store can tell which database it belongs to."""

    __tablename__ = "gentune_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


DATABASE_ID = "database_id"
