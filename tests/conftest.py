"""Shared fixtures: a fresh real database (SQLite, or Postgres when asked) per test session.

Set GENTUNE_TEST_DATABASE_URL=postgresql+psycopg2://user@host:port/db to run the suite on
Postgres: a new database is created on that server for the session and dropped after. If the
server cannot be reached the run fails; it never falls back to SQLite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gentune.service.app import create_app
from gentune.service.config import Settings
from gentune.service.db.session import get_engine, migrate

POSTGRES_ENV = "GENTUNE_TEST_DATABASE_URL"
E2E_DIR = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that never reach a database (trainers, metrics, offline CLI commands),
    so that a run against Postgres can leave out what the SQLite run already covered."""
    for item in items:
        uses_database = "database_url" in getattr(item, "fixturenames", ())
        uses_database |= item.get_closest_marker("database") is not None
        if not uses_database and not item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.no_database)


def _create_postgres_database(server_url: str) -> tuple[str, str]:
    name = f"gentune_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:  # raises when Postgres is unreachable: no skipping
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return url, name


def _drop_postgres_database(server_url: str, name: str) -> None:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def new_database_url(tmp_dir: Path) -> tuple[str, object]:
    """A URL of a new, empty database and a callable that removes it."""
    server_url = os.environ.get(POSTGRES_ENV)
    if server_url:
        url, name = _create_postgres_database(server_url)
        return url, lambda: (get_engine(url).dispose(), _drop_postgres_database(server_url, name))
    url = f"sqlite:///{tmp_dir / f'gentune-{uuid.uuid4().hex[:8]}.db'}"
    return url, lambda: get_engine(url).dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, cleanup = new_database_url(tmp_path_factory.mktemp("db"))
    migrate(url)
    yield url
    cleanup()  # type: ignore[operator]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        artifact_dir=str(tmp_path / "artifacts"),
        api_token=None,
        public_url=None,
    )


LOCAL = "http://localhost"
"""Where test clients reach the app: a host name it trusts by default (GENTUNE_TRUSTED_HOSTS)."""


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(base_url=LOCAL, app=create_app(settings)) as test_client:
        yield test_client


def ring_spec(**overrides: object) -> dict[str, object]:
    """A small valid study definition for API tests."""
    spec: dict[str, object] = {
        "name": "ring-test",
        "trainer": "gan2d",
        "params": {"dataset": "ring8", "epochs": 3, "iters_per_epoch": 20},
        "search_space": {
            "lr_g": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "loss": {"type": "categorical", "choices": ["bce", "hinge", "wgan-gp"]},
            "batch_size": {"type": "int", "low": 64, "high": 512, "step": 64},
        },
        "objective": {"metric": "mode_score", "direction": "maximize"},
        "sampler": {"type": "tpe", "seed": 0},
        "pruner": {"type": "median", "n_warmup_steps": 1},
        "budget": {"n_trials": 4, "max_concurrent": 2},
    }
    spec.update(overrides)
    return spec


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
