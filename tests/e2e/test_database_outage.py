"""Postgres restarts mid-study: the worker waits it out, the API answers 503, nothing is lost.

This stops and starts the real Postgres server named by GENTUNE_TEST_DATABASE_URL (with
``pg_ctlcluster``), so it runs in CI's Postgres leg; on SQLite there is no server to restart.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.support.databases import POSTGRES_ENV, new_database_url
from tests.support.servers import Service, service_env, start_api_and_worker, stop

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get(POSTGRES_ENV),
        reason=f"restarts the Postgres server of {POSTGRES_ENV} (CI's Postgres leg sets it)",
    ),
]

EPOCHS = 30
SPEC = {
    "name": "outage",
    "trainer": "quadratic",
    "params": {"epochs": EPOCHS, "sleep_s": 0.25},
    "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.5}},
    "objective": {"metric": "loss", "direction": "minimize"},
    "sampler": {"type": "random", "seed": 5},
    "pruner": {"type": "none"},
    "budget": {"n_trials": 4, "max_concurrent": 2},
}
DOWN_FOR_S = 12


def _cluster_of(server_url: str) -> list[str]:
    """``[version, name]`` of the local Postgres cluster listening on the URL's port."""
    port = str(make_url(server_url).port or 5432)
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    )
    for line in listing.stdout.splitlines():
        version, name, cluster_port, *_ = line.split()
        if cluster_port == port:
            return [version, name]
    raise AssertionError(f"no local Postgres cluster listens on port {port}: {listing.stdout}")


def _pg_ctl(cluster: list[str], action: str) -> None:
    mode = ["-m", "fast"] if action == "stop" else []  # fast: drop every connection now
    subprocess.run(["pg_ctlcluster", *cluster, action, *mode], check=True)


@pytest.fixture
def postgres_cluster() -> Iterator[list[str]]:
    cluster = _cluster_of(os.environ[POSTGRES_ENV])
    try:
        yield cluster
    finally:  # whatever happened, leave the server running for the rest of the suite
        _ensure_running(cluster)


def _ensure_running(cluster: list[str]) -> None:
    status = subprocess.run(["pg_ctlcluster", *cluster, "status"], capture_output=True)
    if status.returncode != 0:
        _pg_ctl(cluster, "start")


def test_postgres_restart_mid_study_loses_nothing(
    tmp_path: Path, postgres_cluster: list[str]
) -> None:
    database_url, cleanup = new_database_url(tmp_path)
    env = service_env(database_url, tmp_path / "artifacts")
    api, worker, svc = start_api_and_worker(database_url, env, tmp_path)
    try:
        svc.wait_for(lambda: _status(svc, "/health") == 200, 60, "the API")
        study_id = svc.api("POST", "/studies", json=SPEC).json()["id"]
        svc.wait_for(
            lambda: any((t["last_step"] or 0) >= 3 for t in _trials(svc, study_id)),
            120,
            "trials to report",
        )

        _pg_ctl(postgres_cluster, "stop")
        down_at = time.monotonic()
        answer = svc.api("GET", f"/studies/{study_id}")
        assert answer.status_code == 503, answer.text
        assert "database is unreachable" in answer.json()["detail"]
        assert answer.headers["Retry-After"].isdigit()
        assert _status(svc, "/health") == 503
        refused = svc.api("POST", "/studies", json={**SPEC, "name": "during-outage"})
        assert refused.status_code == 503, "a write while down is refused, not half-done"
        time.sleep(max(0.0, DOWN_FOR_S - (time.monotonic() - down_at)))
        _pg_ctl(postgres_cluster, "start")

        svc.wait_for(lambda: _status(svc, "/health") == 200, 60, "the API to recover by itself")
        study = svc.wait_for_study(study_id, ("completed", "failed"), timeout=300)
        assert study["state"] == "completed", svc.log_tail()
        studies = svc.api("GET", "/studies").json()["data"]
        assert [s["name"] for s in studies] == ["outage"], "the refused submit stored nothing"
        trials = _trials(svc, study_id)
        assert len(trials) == 4 and all(t["state"] == "completed" for t in trials), trials
        for trial in trials:
            detail = svc.api("GET", f"/trials/{trial['id']}").json()
            steps = [point["step"] for point in detail["metrics"]["loss"]]
            assert steps == list(range(1, EPOCHS + 1)), f"trial {trial['id']} lost evaluations"
        log = (tmp_path / "worker.log").read_text(errors="replace")
        # The study run (not only the poller) waited: its first write of the outage blocks
        # Tune's loop, so which of its writes that is (a report, a metric) varies.
        assert "database unreachable while" in log, "the study run retried its writes"
    finally:
        _ensure_running(postgres_cluster)  # before the processes that would wait for it
        stop(worker)
        stop(api)
        cleanup()  # type: ignore[operator]


def _status(svc: Service, path: str) -> int:
    try:
        return svc.api("GET", path).status_code
    except httpx.HTTPError:
        return 0


def _trials(svc: Service, study_id: int) -> list[dict]:
    return svc.api("GET", f"/studies/{study_id}/trials", params={"limit": 100}).json()["data"]
