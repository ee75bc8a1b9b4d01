"""The worker: claims queued studies and runs each in a process of its own on one Ray cluster.

With ``GENTUNE_RAY_ADDRESS`` unset it starts a local Ray and shares it with its study
processes; otherwise they all join the given cluster. On start it puts back in the queue the
studies it left running (its processes died with it), and it takes over studies of other
workers that stopped heartbeating.

Each study runs in a process of its own, so a crash ends only that study. To start a study at
once, the worker keeps ``warm_runners`` spare study processes already started (imports done,
connected to Ray and the database) and hands the next study it claims to one of them. A spare
warms up at idle CPU priority, so a new one starts as soon as one is taken; where the system
does not let a process leave idle priority, new spares wait until no study of this worker is
starting, so they do not slow one down.

An unreachable database pauses the polling, not the worker: it retries until the database
answers, and judges other workers' heartbeats only once it has itself been connected for
``stale_after_s`` (during an outage nobody could heartbeat).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

from gentune.service.artifacts import bind_store
from gentune.service.config import Settings, export_data_root
from gentune.service.db.models import StudyState
from gentune.service.db.repository import Repository
from gentune.service.db.retry import first_line, is_transient, retrying, transact
from gentune.service.db.session import migrate, redacted, session_scope
from gentune.service.scheduling import priority

log = logging.getLogger("gentune.worker")
PR_SET_PDEATHSIG = 1
STARTUP_GRACE_S = 60.0
"""How long a worker heartbeats for a study process it has just started."""
SPARE_QUIET_S = 30.0
"""Without idle priority, new spares start only when no study of this worker started less than
this long ago."""
SPARE_BACKOFF_S = 60.0
"""After a spare dies while waiting (a broken environment), wait this long before another."""
RUNNER = "gentune.service.scheduling.runner"
SPARE = "gentune.service.scheduling.spare"


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills it if the worker dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def bind_artifact_store(settings: Settings) -> None:
    """Bind GENTUNE_ARTIFACT_DIR to GENTUNE_DATABASE_URL's database, or raise
    ``StoreOfAnotherDatabase`` saying what to set (see ``artifacts.bind_store``)."""
    url = settings.database_url
    database_id = transact(url, lambda repo: repo.database_id(), "reading the database's id")
    bind_store(settings.artifact_dir, database_id, redacted(url))


def start_local_ray(num_cpus: int | None = None) -> str:
    """Start a Ray instance owned by this process; return its address for study processes."""
    import ray

    context = ray.init(
        address="local",  # a new instance even where `ray start` left a cluster address behind
        num_cpus=num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        _node_ip_address="127.0.0.1",
    )
    address: str = context.address_info["gcs_address"]  # type: ignore[attr-defined]
    return address


class Worker:
    def __init__(self, settings: Settings, worker_id: str | None = None) -> None:
        self.settings = settings
        self.worker_id = worker_id or settings.worker_id or default_worker_id()
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.started: dict[int, float] = {}
        """When each child was started (monotonic), for its start-up heartbeats."""
        self.spares: list[subprocess.Popen[bytes]] = []
        """Study processes started and waiting on stdin for a study id."""
        self.spares_after = 0.0
        """No new spare before this time (monotonic)."""
        self.stop_event = threading.Event()
        self.connected_since = time.monotonic()
        self.database_down = False

    def run(self) -> None:
        """Poll the queue until ``stop_event`` is set, then stop the studies it runs."""
        url = self.settings.database_url
        retrying(lambda: migrate(url), "migrating the schema")
        bind_artifact_store(self.settings)  # before any study writes there
        ray_address = self.settings.ray_address or start_local_ray()
        env = {
            **os.environ,
            "GENTUNE_RAY_ADDRESS": ray_address,
            "GENTUNE_DATABASE_URL": url,
            "GENTUNE_ARTIFACT_DIR": self.settings.artifact_dir,
            "GENTUNE_DATA_DIR": export_data_root(self.settings),
        }
        requeued = transact(
            url, lambda repo: repo.requeue_studies_of_worker(self.worker_id), "requeueing"
        )
        if requeued:
            log.info("worker %s: resuming studies %s", self.worker_id, requeued)
        log.info(
            "worker %s: polling %s (up to %d studies at once)",
            self.worker_id,
            redacted(url),
            self.settings.worker_max_studies,
        )
        try:
            while not self.stop_event.is_set():
                self._poll(env)
                self.stop_event.wait(self.settings.worker_poll_s)
        finally:
            self._stop_children()

    def _poll(self, env: dict[str, str]) -> None:
        try:
            if self.database_down:
                self._requeue_orphans()
            self._reap()
            self._beat_for_starting_children()
            if time.monotonic() - self.connected_since >= self.settings.stale_after_s:
                self._take_over_stale()
            self._claim(env)
            self._keep_spares(env)
        except Exception as error:
            if not is_transient(error):
                raise
            if not self.database_down:
                log.warning(
                    "worker %s: database unreachable (%s); its studies go on, polling paused",
                    self.worker_id,
                    first_line(error),
                )
            self.database_down = True
            self.connected_since = time.monotonic()
            return
        if self.database_down:
            log.warning("worker %s: database reachable again", self.worker_id)
            self.database_down = False

    def _claim(self, env: dict[str, str]) -> None:
        while len(self.children) < self.settings.worker_max_studies:
            with session_scope(self.settings.database_url) as session:
                study = Repository(session).claim_next_study(self.worker_id)
                study_id = study.id if study is not None else None
            if study_id is None:
                return
            log.info("worker %s: starting study %s", self.worker_id, study_id)
            self.children[study_id] = self._hand_to_spare(study_id) or self._runner(
                env, str(study_id)
            )
            self.started[study_id] = time.monotonic()

    def _runner(self, env: dict[str, str], *study_id: str) -> subprocess.Popen[bytes]:
        """A study's process; without a study id, a spare that reads one from stdin."""
        return subprocess.Popen(
            [sys.executable, "-m", RUNNER if study_id else SPARE, self.worker_id, *study_id],
            env=env,
            stdin=None if study_id else subprocess.PIPE,
            preexec_fn=die_with_parent,
        )

    def _hand_to_spare(self, study_id: int) -> subprocess.Popen[bytes] | None:
        """The first live spare, now running the study; None if there is none."""
        while self.spares:
            spare = self.spares.pop(0)
            assert spare.stdin is not None
            try:
                spare.stdin.write(f"{study_id}\n".encode())
                spare.stdin.close()
            except OSError:  # it died: a broken pipe
                _end(spare)
                continue
            return spare
        return None

    def _keep_spares(self, env: dict[str, str]) -> None:
        """Forget dead spares; start new ones (without idle priority: only while no study of
        this worker is starting)."""
        now = time.monotonic()
        for spare in [s for s in self.spares if s.poll() is not None]:
            self.spares.remove(spare)
            log.warning(
                "worker %s: a spare study process exited with code %s; the next study "
                "starts a new one (another spare in %.0f s)",
                self.worker_id,
                spare.returncode,
                SPARE_BACKOFF_S,
            )
            self.spares_after = now + SPARE_BACKOFF_S
        if now < self.spares_after:
            return
        if not priority.can_idle() and any(
            now - at < SPARE_QUIET_S for at in self.started.values()
        ):
            return
        while len(self.spares) < self.settings.warm_runners:
            self.spares.append(self._runner(env))

    def _requeue_orphans(self) -> None:
        """After an outage: a claim may have committed while the worker saw it fail."""
        with session_scope(self.settings.database_url) as session:
            orphans = Repository(session).requeue_orphans(self.worker_id, list(self.children))
        if orphans:
            log.warning(
                "worker %s: studies %s had no process; queued again", self.worker_id, orphans
            )

    def _beat_for_starting_children(self) -> None:
        """Heartbeat for study processes still starting (imports, Ray, Optuna), which cannot
        yet heartbeat themselves; after ``STARTUP_GRACE_S`` each is on its own, so a hung run
        is still noticed."""
        now = time.monotonic()
        starting = [i for i, at in self.started.items() if now - at < STARTUP_GRACE_S]
        if not starting:
            return
        with session_scope(self.settings.database_url) as session:
            repo = Repository(session)
            for study_id in starting:
                repo.heartbeat(study_id, self.worker_id)

    def _reap(self) -> None:
        for study_id, process in list(self.children.items()):
            code = process.poll()
            if code is None:
                continue
            if code != 0:  # recorded before the child is forgotten, so an outage cannot lose it
                self._fail_if_running(study_id, f"the study's process exited with code {code}")
            self._forget(study_id)

    def _forget(self, study_id: int) -> subprocess.Popen[bytes]:
        self.started.pop(study_id, None)
        return self.children.pop(study_id)

    def _fail_if_running(self, study_id: int, reason: str) -> None:
        with session_scope(self.settings.database_url) as session:
            repo = Repository(session)
            if repo.owns_study(study_id, self.worker_id):
                repo.fail_running_trials(study_id, reason)
                repo.finish_run(study_id, self.worker_id, StudyState.failed, reason)

    def _take_over_stale(self) -> None:
        with session_scope(self.settings.database_url) as session:
            stale = Repository(session).requeue_stale_studies(
                timedelta(seconds=self.settings.stale_after_s)
            )
        if stale:
            log.warning(
                "worker %s: studies %s stopped heartbeating; queued again", self.worker_id, stale
            )
        for study_id in set(stale) & set(self.children):
            # Its own study process hung: end it, so the study runs once, in a new process.
            self._forget(study_id).kill()

    def _stop_children(self) -> None:
        for spare in self.spares:
            _end(spare)
        self.spares.clear()
        for process in self.children.values():
            process.send_signal(signal.SIGTERM)
        for study_id, process in self.children.items():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                log.warning("worker %s: study %s did not stop in time", self.worker_id, study_id)
        self.children.clear()
        self.started.clear()


def _end(spare: subprocess.Popen[bytes]) -> None:
    """End a spare: closing its stdin tells it no study comes; kill it if it lingers."""
    try:
        if spare.stdin is not None:
            spare.stdin.close()
        spare.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        spare.kill()
        spare.wait()
