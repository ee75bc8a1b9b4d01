"""A fresh real database per use: SQLite in a folder, or a new database on the Postgres server
that GENTUNE_TEST_DATABASE_URL names (created for the run, dropped after)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gentune.service.db.session import get_engine

POSTGRES_ENV = "GENTUNE_TEST_DATABASE_URL"


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
