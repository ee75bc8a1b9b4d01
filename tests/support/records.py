"""Study and trial records written through the repository calls a worker makes, without a
worker: a study started or finished, a trial that reported given values."""

from __future__ import annotations

import math

from gentune.service.config import Settings
from gentune.service.db.models import PruneRecord, StudyState, TrialState, utcnow
from gentune.service.db.repository import Repository
from gentune.service.db.session import session_scope


def start_study(settings: Settings, study_id: int) -> None:
    """What a worker's claim does to the study, without the queue's choice of which one."""
    with session_scope(settings.database_url) as session:
        study = Repository(session).get_study(study_id)
        study.state, study.started_at = StudyState.running, utcnow()


def finish_study(
    settings: Settings, study_id: int, state: StudyState, reason: str | None = None
) -> None:
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        repo.finish_study(repo.get_study(study_id), state, reason)


def add_trial(
    settings: Settings,
    study_id: int,
    number: int,
    values: list[float],
    state: TrialState,
    reason: str | None = None,
    prune: PruneRecord | None = None,
    origin: str | None = None,
) -> int:
    """A trial that reported ``values`` (maximized) and ended in ``state``."""
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        params = {"lr_g": 10 ** -(2 + number / 4)}
        trial = repo.create_trial(study_id, number, params, None, origin)
        best = -math.inf
        for step, value in enumerate(values, start=1):
            best = max(best, value)
            repo.record_progress(
                trial.id, step, {"mode_score": value}, best, step, {"node": "node-a"}
            )
        if state != TrialState.running:
            repo.finish_trial(trial.id, state, reason, prune)
        return trial.id
