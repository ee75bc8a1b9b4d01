"""Recorder: a Ray Tune callback that writes every evaluation and every outcome to the database."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray.tune import Callback

from service.db.models import PruneRecord, TrialState
from service.db.repository import Repository
from service.db.session import session_scope
from service.scheduling.ledger import DriverSide, Ledger

log = logging.getLogger(__name__)


class Recorder(DriverSide, Callback):
    def __init__(self, ledger: Ledger, database_url: str) -> None:
        self.ledger = ledger
        self.database_url = database_url

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        record = self.ledger.trials.get(trial.trial_id)
        if record is None or "metrics" not in result:
            return
        step = int(result["step"])
        with session_scope(self.database_url) as session:
            repo = Repository(session)
            repo.record_progress(
                record.db_id,
                step,
                result["metrics"],
                record.best_value,
                record.best_step,
                result.get("node"),
            )
            for kind, (path, size) in result.get("saved", {}).items():
                repo.upsert_artifact(record.db_id, kind, path, step, size)
            if result.get("run_info"):
                repo.add_run_info(record.db_id, result["run_info"])

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self.ledger.trials.get(trial.trial_id)
        if record is None:
            return
        if record.prune_reason is not None:
            state, reason = TrialState.pruned, record.prune_reason
        elif record.best_value is not None:
            state, reason = TrialState.completed, None
        else:
            state = TrialState.failed
            reason = f"the trainer reported no finite value of {self.ledger.objective}"
        self._finish(record.db_id, state, reason, record.prune)
        log.info(
            "study %s: trial %s %s (best %s=%s)%s",
            self.ledger.study_id,
            record.db_id,
            state.value,
            self.ledger.objective,
            record.best_value,
            f": {reason}" if reason else "",
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self.ledger.trials.get(trial.trial_id)
        if record is None:
            return
        self._finish(record.db_id, TrialState.failed, _error_text(trial))
        log.info("study %s: trial %s failed", self.ledger.study_id, record.db_id)

    def _finish(
        self,
        trial_id: int,
        state: TrialState,
        reason: str | None,
        prune: PruneRecord | None = None,
    ) -> None:
        with session_scope(self.database_url) as session:
            Repository(session).finish_trial(trial_id, state, reason, prune)


def _error_text(trial: Any) -> str:
    """The trainer's exception, last line first, then the traceback (bounded)."""
    text = ""
    if trial.error_file and Path(trial.error_file).is_file():  # the driver-side copy, written first
        text = Path(trial.error_file).read_text(errors="replace")
    text = text or str(trial.get_error() or "") or "the trial's Ray worker failed"
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "the trial failed without a message"
    return f"{lines[-1].strip()}\n\n{text[-4000:]}"
