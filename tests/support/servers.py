"""gentune running for a test: the app in a thread (``ApiServer``), the whole service in a
process of its own (``Service``: API, worker and a local Ray), or one ``gentune`` command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from gentune.service.app import create_app
from gentune.service.config import Settings
from tests.support.specs import ring_spec

LOCAL = "http://localhost"
"""Where test clients reach the app: a host name it trusts by default (GENTUNE_TRUSTED_HOSTS)."""


def run_gentune(
    args: list[str], env: dict[str, str], cwd: Path, until: str | None = None
) -> tuple[int, str]:
    """``gentune ARGS`` in a process of its own: its exit code and output, or, with ``until``,
    its output up to the first line containing ``until``, after which it is stopped (code 0)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gentune.service.cli", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    if until is None:
        output = process.stdout.read()
        return process.wait(timeout=120), output
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if until in line:
                break
    finally:
        process.terminate()
        process.wait(timeout=60)
    return 0, "".join(lines)


PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins"


REPO_ROOT = Path(__file__).resolve().parents[2]


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
            time.sleep(0.2)
        raise AssertionError(
            f"timed out after {timeout:.0f}s waiting for {what}; service log "
            f"tail:\n{self.log_tail()}"
        )

    def wait_until_up(self, timeout: float = 60) -> None:
        def answers() -> bool:
            try:
                return self.api("GET", "/health").status_code == 200
            except httpx.HTTPError:
                return False

        self.wait_for(answers, timeout, "the service to answer /health")

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
        "GENTUNE_WORKER_POLL_S": "0.2",
        "GENTUNE_DATA_DIR": "data",  # relative on purpose: resolved in the service's folder
        "PYTHONPATH": os.pathsep.join([str(PLUGIN_DIR), str(REPO_ROOT)]),
        "RAY_DEDUP_LOGS": "0",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("GENTUNE_RAY_ADDRESS", None)
    env.pop("GENTUNE_API_TOKEN", None)
    return env


def start_api_and_worker(
    database_url: str, env: dict[str, str], home: Path
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], Service]:
    """``gentune serve --no-worker`` and ``gentune worker`` as two processes (logs in
    ``home``), for tests that stop, freeze or restart the worker alone."""
    port = free_port()
    api = start(["serve", "--port", str(port), "--no-worker"], env, home / "api.log")
    worker = start(["worker"], env, home / "worker.log")
    svc = Service(
        f"http://127.0.0.1:{port}", database_url, home / "artifacts", env, home / "worker.log"
    )
    return api, worker, svc


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


class ApiServer:
    """The real app served by uvicorn from a background thread, on a port of its own that
    stays the same when it is stopped and started again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(
            create_app(self.settings, run_migrations=False),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "uvicorn did not stop"

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}/api/v1{path}", timeout=10, **kwargs)

    def new_study(self, **overrides: object) -> dict[str, Any]:
        overrides.setdefault("name", f"cli-{uuid.uuid4().hex[:8]}")
        response = self.api("POST", "/studies", json=ring_spec(**overrides))
        assert response.status_code == 201, response.text
        study: dict[str, Any] = response.json()
        return study


@contextmanager
def api_server(database_url: str, artifact_dir: Path, **settings: Any) -> Iterator[ApiServer]:
    """The app on ``database_url`` served for the length of the block: no token unless
    ``settings`` give one."""
    defaults: dict[str, Any] = {"api_token": None, "public_url": None}
    server = ApiServer(
        Settings(
            database_url=database_url, artifact_dir=str(artifact_dir), **{**defaults, **settings}
        )
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
