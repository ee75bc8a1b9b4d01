"""Recorder: a Ray Tune callback that writes every evaluation and every outcome to the database.

Each write is retried while the database is unreachable (``service.db.retry``): Tune's loop
waits, the trials keep training, and no evaluation is dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray import cloudpickle
from ray.exceptions import NodeDiedError, RayActorError, WorkerCrashedError
from ray.tune import Callback

from gentune.service.artifacts import ArtifactStore, is_checkpoint, sweep_checkpoints
from gentune.service.db.models import PruneRecord, TrialState
from gentune.service.db.repository import Repository
from gentune.service.db.retry import transact
from gentune.service.scheduling.ledger import DriverSide, Ledger
from gentune.service.scheduling.trial_entry import failure_text

log = logging.getLogger(__name__)
WORKER_OR_NODE_LOST = "Ray lost the trial's worker process or its node"


class Recorder(DriverSide, Callback):
    def __init__(self, ledger: Ledger, database_url: str, artifact_dir: str | None = None) -> None:
        self.ledger = ledger
        self.database_url = database_url
        self.store = ArtifactStore(artifact_dir) if artifact_dir else None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Ray found the trial its resources: from pending, it runs (and its time counts)."""
        record = self.ledger.trials.get(trial.trial_id)
        if record is not None:
            transact(
                self.database_url,
                lambda repo: repo.start_trial(record.db_id),
                f"starting trial {record.db_id}",
            )

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        record = self.ledger.trials.get(trial.trial_id)
        if record is None:
            return
        if "trainer_error" in result:
            record.error = str(result["trainer_error"])
            transact(
                self.database_url,
                lambda repo: repo.record_placement(record.db_id, result),
                f"recording where trial {record.db_id} ran",
            )
            return
        if "metrics" not in result:
            return
        step = int(result["step"])

        def write(repo: Repository) -> None:
            if not repo.record_progress(
                record.db_id,
                step,
                result["metrics"],
                record.best_value,
                record.best_step,
                result,
                self.ledger.values_of(record) if self.ledger.objectives else None,
                self.ledger.feasible(record),
            ):
                return  # no longer this run's trial: a worker that took the study over failed it
            for kind, (path, size, at_step) in result.get("saved", {}).items():
                repo.upsert_artifact(record.db_id, kind, path, at_step, size)
            if result.get("dropped"):  # sample grids past retention: files go next save
                repo.delete_artifacts(record.db_id, result["dropped"])
            if result.get("run_info"):
                repo.add_run_info(record.db_id, result["run_info"])

        transact(self.database_url, write, f"recording trial {record.db_id} at step {step}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self.ledger.trials.get(trial.trial_id)
        if record is None:
            return
        if record.error is not None:
            state, reason = TrialState.failed, record.error
        elif record.prune_reason is not None:
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
            f": {reason.splitlines()[0]}" if reason else "",
        )

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Ray lost the trial's worker or node and starts the trial again from the beginning."""
        record = self.ledger.trials.get(trial.trial_id)
        if record is None:
            return
        record.restart()
        why = _error_text(trial).splitlines()[0]
        attempt = trial.run_metadata.num_failures + 1  # Tune counted the failure already
        transact(
            self.database_url,
            lambda repo: repo.restart_trial(record.db_id, attempt, f"started again after: {why}"),
            f"restarting trial {record.db_id}",
        )
        log.warning("study %s: trial %s starts again: %s", self.ledger.study_id, record.db_id, why)

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
        def finish(repo: Repository) -> set[int]:
            repo.finish_trial(trial_id, state, reason, prune)
            return {a.step for a in repo.artifacts_of_trial(trial_id) if is_checkpoint(a.kind)}

        recorded = transact(self.database_url, finish, f"finishing trial {trial_id}")
        if self.store is not None:
            # The trial's last save kept its previous set too, until this run recorded the new
            # one; now only what the database points at stays. (A no-op where this process
            # does not see the artifact store.)
            sweep_checkpoints(self.store, self.ledger.study_id, trial_id, recorded)


LOST = (RayActorError, WorkerCrashedError, NodeDiedError)
"""What Ray raises when a trial's worker process or its node is gone."""


def _error_text(trial: Any) -> str:
    """Why Ray failed the trial, as a reason; said plainly when its worker or node was lost."""
    text = ""
    if trial.error_file and Path(trial.error_file).is_file():  # the driver-side copy, written first
        text = Path(trial.error_file).read_text(errors="replace")
    text = failure_text(text or str(trial.get_error() or "") or "the trial's Ray worker failed")
    if _was_lost(trial):
        attempts = trial.run_metadata.num_failures
        return f"{WORKER_OR_NODE_LOST} (attempt {attempts}); Ray said: {text}"
    return text


def _was_lost(trial: Any) -> bool:
    """Whether Ray's last error for ``trial`` says its worker or node went away."""
    path = trial.pickled_error_file
    if not path or not Path(path).is_file():
        return False
    try:
        with open(path, "rb") as handle:
            error = cloudpickle.load(handle)  # written by Tune in this process, not user input
    except Exception:
        return False
    return isinstance(error, LOST)
