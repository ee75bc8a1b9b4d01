"""Run a study definition through gentune's own study runner, for the benchmarks.

Each run gets a fresh SQLite database in ``home`` and shares the local Ray the caller
started; the study is validated and stored as the API would store it, claimed, and run to
its end by ``run_study``, the code a worker runs. ``Outcome`` is what the benchmarks compare.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from ray.tune.schedulers import TrialScheduler
from sqlalchemy import select

from gentune.service.config import Settings
from gentune.service.db.models import Metric, Study, Trial, TrialState
from gentune.service.db.repository import Repository
from gentune.service.db.session import migrate, session_scope
from gentune.service.scheduling.ledger import Ledger
from gentune.service.scheduling.runner import run_study
from gentune.service.schemas.study import StudySpec
from gentune.service.studies.validation import resolved_definition, validate_spec
from gentune.trainers.base import Trainer

SchedulerFactory = Callable[[Ledger, optuna.Study], TrialScheduler]


@dataclass
class Outcome:
    method: str
    best: float
    epochs: int
    """Trial-epochs trained in all (evaluations recorded)."""
    seconds: float
    trials: int
    pruned: int
    history: list[tuple[float, float]]
    """(seconds since the study started, objective) for each evaluation, in recorded order."""
    baseline: float | None = None
    """The value of the study's baseline trial (the trainer's defaults), if it ran one."""
    dead: int = 0
    """Completed trials whose objective never moved off its floor (the metric's worst value,
    or the trial's first) though the study's best did better: dead trials trained to the end."""

    def reach(self, target: float, maximize: bool) -> tuple[int, float] | None:
        """Trial-epochs and seconds spent when the objective first reached ``target``."""
        for i, (seconds, value) in enumerate(self.history, start=1):
            if math.isfinite(value) and (value >= target if maximize else value <= target):
                return i, seconds
        return None


def run_definition(
    raw: dict[str, Any],
    method: str,
    home: Path,
    scheduler_factory: SchedulerFactory | None = None,
) -> Outcome:
    """Run the study ``raw`` defines to its end. Its best is the study's own, as the API
    reports it: the best completed (feasible) trial's value."""
    database = home / f"{raw['name']}.db"
    settings = Settings(
        database_url=f"sqlite:///{database}",
        artifact_dir=str(home / raw["name"]),  # trial ids restart at 1 in each database
    )
    migrate(settings.database_url)
    spec = StudySpec.model_validate(raw)
    trainer = validate_spec(spec, settings)
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        study_id = repo.create_study(spec.name, spec.trainer, resolved_definition(spec, trainer)).id
        repo.claim_next_study("bench")
    run_study(study_id, "bench", settings, scheduler_factory=scheduler_factory)
    objective = spec.objective.metric
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        study = session.get(Study, study_id)
        assert study is not None and study.started_at is not None
        started = study.started_at
        rows = session.execute(
            select(Metric.created_at, Metric.value)
            .join(Trial, Trial.id == Metric.trial_id)
            .where(Trial.study_id == study_id, Metric.name == objective)
            .order_by(Metric.created_at, Metric.id)
        ).all()
        counts = repo.trial_counts(study_id)
        curves = session.execute(
            select(Metric.trial_id, Metric.value)
            .join(Trial, Trial.id == Metric.trial_id)
            .where(
                Trial.study_id == study_id,
                Trial.state == TrialState.completed,
                Metric.name == objective,
            )
            .order_by(Metric.trial_id, Metric.step)
        ).all()
        best = repo.best_trial(study_id, spec.objective.direction)
        baseline = repo.trial_of_origin(study_id, "defaults")
        finished = study.finished_at or rows[-1][0]
        best_value = best.value if best is not None and best.value is not None else math.nan
        baseline_value = baseline.value if baseline is not None else None
    history = [
        (
            (at.replace(tzinfo=None) - started.replace(tzinfo=None)).total_seconds(),
            math.nan if value is None else value,
        )
        for at, value in rows
    ]
    by_trial: dict[int, list[float]] = {}
    for trial_id, value in curves:
        by_trial.setdefault(trial_id, []).append(math.nan if value is None else value)
    return Outcome(
        method,
        best_value,
        len(history),
        (finished.replace(tzinfo=None) - started.replace(tzinfo=None)).total_seconds(),
        sum(counts.values()),
        counts["pruned"],
        history,
        baseline_value,
        sum(_dead(values, spec, trainer, best_value) for values in by_trial.values()),
    )


def _dead(values: list[float], spec: StudySpec, trainer: Trainer, best: float) -> bool:
    """Whether a trial's objective never moved off its floor while the study did better."""
    sign = 1.0 if spec.objective.direction == "maximize" else -1.0
    worst = trainer.metrics[spec.objective.metric].worst
    finite = [v for v in values if math.isfinite(v)]
    if not finite or not math.isfinite(best):
        return False
    floor = worst if worst is not None else finite[0]
    return all(sign * (v - floor) <= 0 for v in finite) and sign * (best - floor) > 0
