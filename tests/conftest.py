"""Shared fixtures: a fresh real database (SQLite, or Postgres when asked) per test session.

Set GENTUNE_TEST_DATABASE_URL=postgresql+psycopg2://user@host:port/db to run the suite on
Postgres: a new database is created on that server for the session and dropped after. If the
server cannot be reached the run fails; it never falls back to SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gentune.service.app import create_app
from gentune.service.config import Settings
from gentune.service.db.session import migrate
from tests.support.databases import new_database_url
from tests.support.servers import LOCAL

E2E_DIR = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that never reach a database (trainers, metrics, offline CLI commands),
    so that a run against Postgres can leave out what the SQLite run already covered."""
    for item in items:
        uses_database = "database_url" in getattr(item, "fixturenames", ())
        uses_database |= item.get_closest_marker("database") is not None
        if not uses_database and not item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.no_database)


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


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(base_url=LOCAL, app=create_app(settings)) as test_client:
        yield test_client
