"""A worker killed mid-study: on restart the study finishes its budget and loses nothing."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support.databases import new_database_url
from tests.support.servers import Service, service_env, start, start_api_and_worker, stop

pytestmark = pytest.mark.slow

SPEC = {
    "name": "survivor",
    "trainer": "quadratic",
    "params": {"epochs": 12, "sleep_s": 0.25},
    "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.5}},
    "objective": {"metric": "loss", "direction": "minimize"},
    "sampler": {"type": "random", "seed": 1},
    "pruner": {"type": "none"},
    "budget": {"n_trials": 6, "max_concurrent": 2},
}


def test_killed_worker_resumes_on_restart(tmp_path: Path) -> None:
    database_url, cleanup = new_database_url(tmp_path)
    env = {**service_env(database_url, tmp_path / "artifacts"), "GENTUNE_WORKER_ID": "w-1"}
    api, worker, svc = start_api_and_worker(database_url, env, tmp_path)
    try:
        svc.wait_until_up()
        study_id = svc.api("POST", "/studies", json=SPEC).json()["id"]

        def done_and_running() -> bool:
            counts = svc.api("GET", f"/studies/{study_id}").json()["trial_counts"]
            return counts["completed"] >= 1 and counts["running"] >= 1

        svc.wait_for(done_and_running, 180, "one finished and one running trial")
        os.kill(worker.pid, signal.SIGKILL)  # no goodbye: its study processes die with it
        worker.wait()
        before = {t["id"]: t for t in _trials(svc, study_id)}
        finished_before = {i: t for i, t in before.items() if t["state"] == "completed"}
        metrics_before = {
            i: svc.api("GET", f"/trials/{i}").json()["metrics"] for i in finished_before
        }

        worker = start(["worker"], env, tmp_path / "worker.log")
        study = svc.wait_for_study(study_id, ("completed", "failed"), timeout=240)
        assert study["state"] == "completed", svc.log_tail()
        after = {t["id"]: t for t in _trials(svc, study_id)}
        lost = [t for t in after.values() if t["reason"] == "worker lost"]
        assert lost, "the trials in flight at the kill are failed as 'worker lost'"
        assert all(t["state"] == "failed" for t in lost)
        for trial_id, trial in finished_before.items():
            assert after[trial_id]["state"] == "completed"
            assert after[trial_id]["value"] == trial["value"]
            assert (
                svc.api("GET", f"/trials/{trial_id}").json()["metrics"] == metrics_before[trial_id]
            )
        counted = [t for t in after.values() if t["reason"] != "worker lost"]
        assert len(counted) == SPEC["budget"]["n_trials"], "the full budget runs, lost ones aside"
        assert all(t["state"] == "completed" for t in counted)
    finally:
        stop(worker)
        stop(api)
        cleanup()  # type: ignore[operator]


def _trials(svc: Service, study_id: int) -> list[dict]:
    return svc.api("GET", f"/studies/{study_id}/trials", params={"limit": 100}).json()["data"]
