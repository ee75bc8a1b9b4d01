"""A worker's spare study process: the next study runs in it, and a dead spare loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from gentune.service.scheduling import priority
from gentune.service.scheduling.runner import SPARE_NAME, STUDY_NAME
from tests.support.databases import new_database_url
from tests.support.servers import service_env, start_api_and_worker, stop
from tests.support.specs import quadratic_spec

pytestmark = [pytest.mark.slow, pytest.mark.one_database]  # spares open both kinds alike

SPEC = quadratic_spec("warm", n_trials=2, max_concurrent=1)


def test_a_claimed_study_runs_in_the_spare_and_a_dead_spare_is_replaced(tmp_path: Path) -> None:
    database_url, cleanup = new_database_url(tmp_path)
    env = {**service_env(database_url, tmp_path / "artifacts"), "GENTUNE_WARM_RUNNERS": "1"}
    api, worker, svc = start_api_and_worker(database_url, env, tmp_path)
    try:
        svc.wait_until_up()
        svc.wait_for(lambda: len(_children(worker.pid, SPARE_NAME)) == 1, 60, "a spare runner")
        [spare] = _children(worker.pid, SPARE_NAME)
        if priority.can_idle():  # it waits at idle CPU priority, all of its threads
            assert _policies(spare) == {os.SCHED_IDLE}
        first = svc.api("POST", "/studies", json=SPEC).json()["id"]
        svc.wait_for(
            lambda: _children(worker.pid, STUDY_NAME) == [spare], 60, "the spare to take the study"
        )
        assert _policies(spare) == {os.SCHED_OTHER}, "the study runs at normal priority"
        assert svc.wait_for_study(first, ("completed", "failed"), 120)["state"] == "completed"

        # Once the study has ended, the worker starts a new spare; one that dies while
        # waiting costs nothing: the next study starts in a process of its own.
        svc.wait_for(lambda: len(_children(worker.pid, SPARE_NAME)) == 1, 60, "a new spare runner")
        [second_spare] = _children(worker.pid, SPARE_NAME)
        assert second_spare != spare
        os.kill(second_spare, signal.SIGKILL)
        second = svc.api("POST", "/studies", json=SPEC).json()["id"]
        study = svc.wait_for_study(second, ("completed", "failed"), 120)
        assert study["state"] == "completed", svc.log_tail()
        assert study["claims"] == 1
        trials = svc.api("GET", f"/studies/{second}/trials").json()["data"]
        assert [t["state"] for t in trials] == ["completed", "completed"]
        assert worker.poll() is None, "the worker outlives its spares"
    finally:
        stop(worker)
        stop(api)
        cleanup()  # type: ignore[operator]


def _policies(pid: int) -> set[int]:
    """The scheduling policies of a process's threads."""
    return {os.sched_getscheduler(int(task)) for task in os.listdir(f"/proc/{pid}/task")}


def _children(pid: int, name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid), "-x", name], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]
