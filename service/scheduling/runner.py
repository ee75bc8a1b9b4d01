"""Run one study as one Ray Tune experiment, in a process of its own.

The worker runs each study it claims in a process of its own
(``python -m gentune.service.scheduling.runner WORKER_ID STUDY_ID``): a crash or a cancel then
ends only that study, and several studies run side by side on one Ray cluster. To start a study
at once, the worker keeps a spare process warm (``spare WORKER_ID``, which calls ``main`` here
with no study: imports done, connected to Ray and the database, at idle CPU priority until its
study comes) and hands it the next study it claims on stdin.

A run resumes a study left running by a lost worker: trials that were in flight are failed as
``worker lost`` (they do not use up budget) and the rest of the budget runs.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import ray
from optuna.trial import TrialState as OptunaTrialState
from ray import tune
from ray.tune.schedulers import TrialScheduler

from gentune.service.config import Settings, get_settings
from gentune.service.db.models import WORKER_LOST, StudyState, utcnow
from gentune.service.db.repository import Repository, as_utc
from gentune.service.db.retry import is_transient, retrying, transact
from gentune.service.db.session import optuna_storage, session_scope
from gentune.service.scheduling.ledger import DriverSide, Ledger
from gentune.service.scheduling.pruning import PruningScheduler, build_pruner
from gentune.service.scheduling.recorder import Recorder
from gentune.service.scheduling.searcher import OptunaSearcher, build_sampler
from gentune.service.scheduling.trial_entry import run_trial
from gentune.service.schemas.study import StudySpec
from gentune.service.studies.space import grid_size, pruner_for
from gentune.service.studies.warm_start import (
    ORIGIN,
    ORIGIN_NOTE,
    QueuedConfig,
    first_configs,
    runs_baseline,
)
from gentune.service.studies.warm_start import trial_ids as warm_start_trials
from gentune.trainers.base import Trainer
from gentune.trainers.registry import get_trainer

log = logging.getLogger("gentune.runner")
PR_SET_NAME = 15
SPARE_NAME = "gentune-spare"
STUDY_NAME = "gentune-study"
"""Process names of a spare runner and of a study's runner (``pgrep -x gentune-study``)."""
WARM_MODULES = (
    "pyarrow.fs",
    "ray.tune.execution.tune_controller",
    "ray.train._internal.storage",
)
"""What Tune imports on its first fit, imported by a spare before its study comes."""
SPARE_READY = "spare runner ready"
"""What a spare logs once it waits for a study with its imports and connections done."""
TAKEN_OVER = "the study was taken over by another worker"

SchedulerFactory = Callable[[Ledger, optuna.Study], TrialScheduler]


class StudyStopper(DriverSide, tune.Stopper):
    """Ends the experiment on cancel, on the study's time budget or on shutdown; heartbeats."""

    def __init__(
        self,
        study_id: int,
        worker_id: str,
        settings: Settings,
        timeout_s: float | None,
        started_at: datetime | None = None,
    ) -> None:
        self.study_id = study_id
        self.worker_id = worker_id
        self.settings = settings
        # The time budget counts from the study's first start, across resumes.
        spent = (utcnow() - started_at).total_seconds() if started_at is not None else 0.0
        self.deadline = time.monotonic() + timeout_s - max(0.0, spent) if timeout_s else None
        self.shutdown = threading.Event()
        self.reason: str | None = None
        self._next_check = 0.0
        self._next_beat = 0.0

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        if self.reason is not None:
            return True
        now = time.monotonic()
        if self.shutdown.is_set():
            self.reason = WORKER_LOST
        elif self.deadline is not None and now >= self.deadline:
            self.reason = "stopped when the study's time budget ran out"
        elif now >= self._next_check:
            self._next_check = now + 1.0
            try:
                with session_scope(self.settings.database_url) as session:
                    repo = Repository(session)
                    if repo.cancel_requested(self.study_id):
                        self.reason = "study cancelled"
                    elif now >= self._next_beat:
                        self._next_beat = now + self.settings.heartbeat_s
                        if not repo.heartbeat(self.study_id, self.worker_id):
                            self.reason = TAKEN_OVER
            except Exception as error:
                if not is_transient(error):
                    raise
                # Trials go on; their results wait in the Recorder until the database is back.
                log.warning("study %s: cannot check for a cancel: %s", self.study_id, error)
        return self.reason is not None


@dataclass(frozen=True)
class StoredStudy:
    """What a run reads of its study before it starts."""

    spec: StudySpec
    optuna_name: str
    started_at: datetime | None
    claims: int

    @classmethod
    def read(cls, repo: Repository, study_id: int) -> StoredStudy:
        study = repo.get_study(study_id)
        return cls(
            StudySpec.model_validate(study.spec),
            study.optuna_study_name,
            as_utc(study.started_at),
            study.claims,
        )


@dataclass(frozen=True)
class StudyRun:
    """The facts of one run of a study, fixed once its Optuna studies are open."""

    study_id: int
    worker_id: str
    settings: Settings
    spec: StudySpec
    trainer: Trainer
    optuna_study: optuna.Study
    pruning_study: optuna.Study | None
    """A multi-objective study's twin for its primary objective, which its pruner judges."""

    @property
    def url(self) -> str:
        return self.settings.database_url


def run_study(
    study_id: int,
    worker_id: str,
    settings: Settings,
    stopper_hook: list[StudyStopper] | None = None,
    scheduler_factory: SchedulerFactory | None = None,
) -> StudyState:
    """Run (or resume) ``study_id`` to its end; return its final state.

    ``scheduler_factory`` replaces gentune's pruning scheduler (benchmarks compare it with
    Ray Tune's own schedulers this way)."""
    url = settings.database_url
    stored = transact(
        url, lambda repo: StoredStudy.read(repo, study_id), f"loading study {study_id}"
    )
    trainer = get_trainer(stored.spec.trainer)
    refusal = _why_not_run(stored, trainer, settings, worker_id)
    if refusal is not None or trainer is None:
        return _finish(url, study_id, worker_id, StudyState.failed, refusal)
    run = _open_studies(study_id, worker_id, settings, stored, trainer)
    _enqueue_first_configs(run)
    remaining = _remaining_budget(run)
    stopper = StudyStopper(
        study_id, worker_id, settings, run.spec.budget.timeout_s, stored.started_at
    )
    if stopper_hook is not None:
        stopper_hook.append(stopper)
    ledger = _ledger(run)
    unfit = _too_big_for_the_cluster(run.spec) if remaining > 0 else None
    if unfit is not None:
        return _finish(url, study_id, worker_id, StudyState.failed, unfit)
    if remaining > 0 and not stopper.stop_all():
        log.info(
            "study %s: running %d trials (%d at once)",
            study_id,
            remaining,
            run.spec.budget.max_concurrent,
        )
        scheduler = (
            scheduler_factory(ledger, run.optuna_study)
            if scheduler_factory is not None
            else PruningScheduler(ledger, run.optuna_study, pruner_for(run.spec, trainer))
        )
        _fit(run, ledger, scheduler, stopper, remaining)
    _fail_unfinished(run, ledger, stopper.reason)
    return _settle(run, stopper.reason)


def _why_not_run(
    stored: StoredStudy, trainer: Trainer | None, settings: Settings, worker_id: str
) -> str | None:
    """Why this run must fail the study at once, or None."""
    if stored.claims > settings.max_claims:
        return (
            f"its runs ended without finishing it {stored.claims - 1} times (each lost worker or "
            f"restart resumes it); failed after {settings.max_claims} runs so that it does not "
            "loop for ever (GENTUNE_MAX_CLAIMS); see the workers' logs"
        )
    if trainer is None:
        return f"trainer '{stored.spec.trainer}' is not registered on worker {worker_id}"
    return None


def _open_studies(
    study_id: int, worker_id: str, settings: Settings, stored: StoredStudy, trainer: Trainer
) -> StudyRun:
    """Open (or create) the study's Optuna studies, after failing the trials a lost run left
    in flight; the sampler's seed moves on with every trial the study already has."""
    url, spec, name = settings.database_url, stored.spec, stored.optuna_name
    storage = retrying(lambda: _storage(url), "connecting to Optuna's storage")
    existing = retrying(
        lambda: _recover_in_flight(url, study_id, storage, name), "recovering trials"
    )
    sampler = build_sampler(
        spec.sampler, spec.search_space, seed_offset=existing, n_constraints=len(spec.constraints)
    )
    pruner = build_pruner(pruner_for(spec, trainer))
    optuna_study = retrying(
        lambda: optuna.create_study(
            storage=storage,
            study_name=name,
            load_if_exists=True,
            directions=[o.direction for o in spec.all_objectives],
            sampler=sampler,
            # Optuna's pruners judge one objective: a multi-objective study's trials are
            # judged in a twin study of its primary objective.
            pruner=optuna.pruners.NopPruner() if spec.multi_objective else pruner,
        ),
        "opening the Optuna study",
    )
    pruning_study = (
        retrying(
            lambda: optuna.create_study(
                storage=storage,
                study_name=f"{name}{PRIMARY_SUFFIX}",
                load_if_exists=True,
                direction=spec.objective.direction,
                pruner=pruner,
            ),
            "opening the Optuna study",
        )
        if spec.multi_objective
        else None
    )
    retrying(lambda: optuna_study.set_user_attr("gentune_study_id", study_id), "telling Optuna")
    return StudyRun(study_id, worker_id, settings, spec, trainer, optuna_study, pruning_study)


def _enqueue_first_configs(run: StudyRun) -> None:
    """The defaults' config, given points and warm-start configs go first, queued in Optuna."""
    spec = run.spec
    if runs_baseline(spec) or spec.points_to_evaluate or spec.warm_start is not None:
        configs = transact(
            run.url,
            lambda repo: first_configs(
                spec, run.trainer, repo.trials_by_id(warm_start_trials(spec))
            ),
            "loading the warm start's trials",
        )
        retrying(lambda: _enqueue_first(run.optuna_study, configs), "telling Optuna")


def _remaining_budget(run: StudyRun) -> int:
    """Trials left to start: the budget less those that used it (and the grid's points left)."""
    used = transact(run.url, lambda repo: repo.budget_used(run.study_id), "counting trials")
    remaining = run.spec.budget.n_trials - used
    if run.spec.sampler.type == "grid":
        remaining = min(remaining, grid_size(run.spec) - used)
    return remaining


def _ledger(run: StudyRun) -> Ledger:
    spec = run.spec
    ledger = Ledger(
        run.study_id,
        spec.objective.metric,
        spec.objective.direction,
        run.worker_id,
        objectives=[(o.metric, o.direction) for o in spec.objectives or []],
        constraints=list(spec.constraints),
        pruning_study=run.pruning_study,
    )
    if spec.budget.max_evaluations is not None:  # a resumed run counts what came before
        ledger.evaluations = transact(
            run.url,
            lambda repo: repo.evaluations_reported(run.study_id, spec.objective.metric),
            "counting evaluations",
        )
    return ledger


def _fail_unfinished(run: StudyRun, ledger: Ledger, reason: str | None) -> None:
    """Fail this run's trials that never finished, in gentune and in Optuna (the twin too).
    Only this run's own: after a takeover, the others belong to the new run."""
    mine = [record.db_id for record in ledger.trials.values()]
    straggler_reason = WORKER_LOST if reason == TAKEN_OVER else reason
    stragglers = transact(
        run.url,
        lambda repo: [
            t.number
            for t in repo.fail_running_trials(
                run.study_id, straggler_reason or "the trial never reported", only=mine
            )
        ],
        "failing unfinished trials",
    )
    for number in stragglers:
        retrying(partial(_tell_fail, run.optuna_study, number), "telling Optuna")
    for record in ledger.trials.values():  # their twins in the primary objective's study
        judged = record.pruning_trial
        if judged is not None and record.db_id in mine and not record.finished:
            retrying(partial(_tell_fail, judged.study, judged.number), "telling Optuna")


def _settle(run: StudyRun, reason: str | None) -> StudyState:
    """The study's state after its experiment ended, recorded with the reason."""
    url, study_id, worker_id = run.url, run.study_id, run.worker_id
    if reason == TAKEN_OVER:
        return _taken_over(study_id)
    if reason == WORKER_LOST:
        if not transact(
            url, lambda repo: repo.requeue_study(study_id, worker_id), "requeueing the study"
        ):
            return _taken_over(study_id)
        log.info("study %s: back in the queue; its worker is shutting down", study_id)
        return StudyState.queued
    if reason == "study cancelled":
        return _finish(url, study_id, worker_id, StudyState.cancelled, "cancelled by request")
    counts = transact(url, lambda repo: repo.trial_counts(study_id), "counting trials")
    if counts["completed"] == 0 and counts["pruned"] == 0 and counts["failed"] > 0:
        return _finish(
            url,
            study_id,
            worker_id,
            StudyState.failed,
            f"all {counts['failed']} trials failed; see the trials' reasons",
        )
    return _finish(url, study_id, worker_id, StudyState.completed, reason)


def _too_big_for_the_cluster(spec: StudySpec) -> str | None:
    """Why no node of the Ray cluster can ever run one of the study's trials (a trial's CPUs
    and GPUs come from one node), or None. Ray would otherwise keep the trials pending for
    ever, the study holding its worker's slot. Not checked before Ray is up."""
    if not ray.is_initialized():
        return None
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    for name, key, asked in (
        ("CPUs", "CPU", spec.resources.cpu),
        ("GPUs", "GPU", spec.resources.gpu),
    ):
        largest = max((float(r.get(key, 0.0)) for r in nodes), default=0.0)
        if asked > largest:
            return (
                f"each trial asks for {asked:g} {name} (resources.{key.lower()}), but no node of "
                f"the Ray cluster has more than {largest:g}: its trials could never start. Ask "
                f"for at most {largest:g}, or add a node that has {asked:g}."
            )
    return None


PRIMARY_SUFFIX = "-primary"
"""The twin Optuna study of a multi-objective study's primary objective, for pruning."""


def _enqueue_first(optuna_study: optuna.Study, configs: list[QueuedConfig]) -> None:
    """Queue in Optuna the configs to run before the sampler's own, once: on a resumed run
    those already queued (asked or not) are known by their origin and not queued again."""
    queued = {t.user_attrs.get(ORIGIN) for t in optuna_study.get_trials(deepcopy=False)}
    for config in configs:
        if config.origin not in queued:
            attrs = {ORIGIN: config.origin}
            if config.note is not None:
                attrs[ORIGIN_NOTE] = config.note
                log.info("%s: %s", config.origin, config.note)
            optuna_study.enqueue_trial(config.params, user_attrs=attrs)


def _taken_over(study_id: int) -> StudyState:
    log.warning("study %s: %s; this run stops", study_id, TAKEN_OVER)
    return StudyState.running


def _fit(
    run: StudyRun,
    ledger: Ledger,
    scheduler: TrialScheduler,
    stopper: StudyStopper,
    remaining: int,
) -> None:
    """The study's Ray Tune experiment: ``remaining`` trials asked of Optuna, to its end."""
    settings, spec = run.settings, run.spec
    searcher = OptunaSearcher(ledger, run.optuna_study, spec, run.trainer, settings)
    trainable = tune.with_resources(
        run_trial, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=remaining,
            max_concurrent_trials=spec.budget.max_concurrent,
            reuse_actors=True,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=f"gentune-study-{run.study_id}",
            storage_path=str(Path(settings.artifact_dir).resolve() / "tune"),
            callbacks=[Recorder(ledger, settings.database_url, settings.artifact_dir)],
            stop=stopper,
            failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures),
            verbose=0,
        ),
    )
    tuner.fit()


def _trial_dirname(trial: Any) -> str:
    return f"trial-{trial.trial_id}"


def _recover_in_flight(
    url: str, study_id: int, storage: optuna.storages.BaseStorage, optuna_name: str
) -> int:
    """Fail trials a lost worker left running; return how many trials the study already has."""
    with session_scope(url) as session:
        repo = Repository(session)
        lost = repo.fail_running_trials(study_id, WORKER_LOST)
        existing = repo.list_trials(study_id, 0, 1)[1]
    if lost:
        log.warning(
            "study %s: %d trials were in flight when their worker was lost", study_id, len(lost)
        )
    # The study's Optuna study and, for a multi-objective study, its primary objective's twin:
    # both must agree with gentune's record that nothing is running.
    for name in (optuna_name, f"{optuna_name}{PRIMARY_SUFFIX}"):
        try:
            optuna_study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            continue
        running = optuna_study.get_trials(deepcopy=False, states=(OptunaTrialState.RUNNING,))
        for trial in running:
            _tell_fail(optuna_study, trial.number)
    return existing


def _tell_fail(study: optuna.Study, number: int) -> None:
    study.tell(number, state=OptunaTrialState.FAIL, skip_if_finished=True)


def _finish(
    url: str, study_id: int, worker_id: str, state: StudyState, reason: str | None
) -> StudyState:
    if not transact(
        url,
        lambda repo: repo.finish_run(study_id, worker_id, state, reason),
        "finishing the study",
    ):
        return _taken_over(study_id)
    log.info("study %s: %s%s", study_id, state.value, f" ({reason})" if reason else "")
    return state


def _fail_crashed(repo: Repository, study_id: int, worker_id: str) -> None:
    if repo.owns_study(study_id, worker_id):
        repo.fail_running_trials(study_id, "the study's run crashed")
        repo.finish_run(
            study_id, worker_id, StudyState.failed, "the study's run crashed; see the worker's log"
        )


@functools.cache
def _storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage, opened once per process: a spare opens it before its study comes."""
    return optuna_storage(url)


def _name_process(name: str) -> None:
    """What ``ps`` and ``pgrep`` show for this process (Linux; 15 characters at most)."""
    try:
        ctypes.CDLL("libc.so.6").prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except OSError:
        pass


def _wait_for_study(settings: Settings, study_id: Callable[[], int | None]) -> int | None:
    """A spare: do now what every study's start needs, then wait for ``study_id`` (the one
    the worker sends; None when it sends none)."""
    _name_process(SPARE_NAME)
    for module in WARM_MODULES:
        importlib.import_module(module)
    try:
        _storage(settings.database_url)
    except Exception as error:  # the study's own start retries and reports it
        log.warning("spare runner: Optuna's storage is not reachable yet (%s)", error)
    log.info("%s (pid %d)", SPARE_READY, os.getpid())
    return study_id()


def _read_study_id() -> int | None:
    line = sys.stdin.readline().strip()
    return int(line) if line.isdigit() else None


def main(
    argv: list[str] | None = None, read_study_id: Callable[[], int | None] = _read_study_id
) -> int:
    """``runner WORKER_ID STUDY_ID`` runs the study; ``runner WORKER_ID`` is a spare that
    waits for ``read_study_id`` (by default a line on stdin) once it is warm."""
    parser = argparse.ArgumentParser(description="Run one gentune study (started by a worker).")
    parser.add_argument("worker_id")
    parser.add_argument(
        "study_id", type=int, nargs="?", help="Without it: start warm and read it from stdin."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = get_settings()
    hook: list[StudyStopper] = []

    def on_term(signum: int, _frame: Any) -> None:
        for stopper in hook:
            stopper.shutdown.set()
        if not hook:
            sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    ray.init(
        address=settings.ray_address,
        logging_level=logging.WARNING,
        log_to_driver=False,
        include_dashboard=False,
    )
    study_id: int | None = args.study_id
    if study_id is None:
        study_id = _wait_for_study(settings, read_study_id)
    if study_id is None:
        ray.shutdown()
        return 0
    _name_process(STUDY_NAME)
    try:
        run_study(study_id, args.worker_id, settings, hook)
    except Exception:
        log.exception("study %s: the run crashed", study_id)
        transact(
            settings.database_url,
            lambda repo: _fail_crashed(repo, study_id, args.worker_id),
            "failing the crashed study",
        )
        return 1
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
