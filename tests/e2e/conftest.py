"""A real gentune service (API + worker + local Ray) in a subprocess, on a fresh database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import new_database_url

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins"
REPO_ROOT = Path(__file__).resolve().parents[2]


UNSTABLE_RING_STUDY: dict[str, Any] = {
    "name": "ring-unstable",
    "trainer": "gan2d",
    "params": {"dataset": "ring8", "epochs": 6, "iters_per_epoch": 100},
    "search_space": {
        "lr_g": {"type": "categorical", "choices": [0.001, 0.3]},
        "lr_d": {"type": "categorical", "choices": [0.002, 0.3]},
    },
    "objective": {"metric": "mode_score", "direction": "maximize"},
    "sampler": {"type": "grid", "seed": 0},
    "pruner": {"type": "none"},
    "budget": {"n_trials": 4, "max_concurrent": 2},
}
"""A grid over learning rates of which 0.3 blows the ring GAN up in its first epoch: one
healthy trial, and trials the stability rules stop."""


def quadratic_spec(name: str, n_trials: int, max_concurrent: int, **extra: Any) -> dict[str, Any]:
    """A study of the test plugin's quadratic trainer over its learning rate: trials of a few
    evaluations that take next to no time."""
    return {
        "name": name,
        "trainer": "quadratic",
        "params": {"epochs": 4},
        "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.5}},
        "objective": {"metric": "loss", "direction": "minimize"},
        "sampler": {"type": "random", "seed": 3},
        "pruner": {"type": "none"},
        "budget": {"n_trials": n_trials, "max_concurrent": max_concurrent},
        **extra,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    url: str
    database_url: str
    artifact_dir: Path
    env: dict[str, str]
    log_path: Path

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}/api/v1{path}", timeout=30, **kwargs)

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.5)
        raise AssertionError(
            f"timed out after {timeout:.0f}s waiting for {what}; service log "
            f"tail:\n{self.log_tail()}"
        )

    def wait_for_study(self, study_id: int, states: tuple[str, ...], timeout: float) -> dict:
        self.wait_for(
            lambda: self.api("GET", f"/studies/{study_id}").json()["state"] in states,
            timeout,
            f"study {study_id} to be {'/'.join(states)}",
        )
        return self.api("GET", f"/studies/{study_id}").json()

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def service_env(database_url: str, artifact_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "GENTUNE_DATABASE_URL": database_url,
        "GENTUNE_ARTIFACT_DIR": str(artifact_dir),
        "GENTUNE_WORKER_POLL_S": "0.5",
        "GENTUNE_DATA_DIR": "data",  # relative on purpose: resolved in the service's folder
        "PYTHONPATH": os.pathsep.join([str(PLUGIN_DIR), str(REPO_ROOT)]),
        "RAY_DEDUP_LOGS": "0",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("GENTUNE_RAY_ADDRESS", None)
    env.pop("GENTUNE_API_TOKEN", None)
    return env


def start(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "gentune.service.cli", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=log_path.parent,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 90) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("service")
    database_url, cleanup = new_database_url(home)
    port = free_port()
    env = service_env(database_url, home / "artifacts")
    log_path = home / "service.log"
    process = start(["serve", "--port", str(port)], env, log_path)
    svc = Service(f"http://127.0.0.1:{port}", database_url, home / "artifacts", env, log_path)

    def healthy() -> bool:
        try:
            return svc.api("GET", "/health").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        svc.wait_for(healthy, 60, "the service to answer /health")
        yield svc
    finally:
        stop(process)
        cleanup()  # type: ignore[operator]
