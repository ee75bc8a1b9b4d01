"""Engines, sessions and migrations for one database URL."""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, NullPool, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    import optuna

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "gentune_alembic_version"
SQLITE_TIMEOUT_S = 30

_migrate_lock = threading.Lock()


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _prepare_sqlite_path(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while the worker writes; the busy timeout waits out short locks.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_TIMEOUT_S * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@cache
def get_engine(url: str) -> Engine:
    """One engine per URL and process."""
    if is_sqlite(url):
        _prepare_sqlite_path(url)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_TIMEOUT_S, "check_same_thread": False}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


@cache
def get_sessionmaker(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises."""
    session = get_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def redacted(url: str) -> str:
    """The URL with its password hidden, for logs."""
    return make_url(url).render_as_string(hide_password=True)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (idempotent; safe to run on every start).

    Optuna's tables are created here too, before any study runs: two study runs creating
    them at once on a new database collide on Optuna's schema-version stamp.
    """
    if is_sqlite(url):
        _prepare_sqlite_path(url)
    with _migrate_lock, _one_migration_at_a_time(url):
        command.upgrade(alembic_config(url), "head")
        optuna_storage(url).engine.dispose()


MIGRATION_LOCK_KEY = 0x67656E74756E65  # "gentune": Postgres's advisory lock for migrations


@contextmanager
def _one_migration_at_a_time(url: str) -> Iterator[None]:
    """Serialise migrations across processes and machines: `gentune serve` and every worker
    migrate at start, and two upgrades of a new database at once collide on half-made
    tables. Postgres: a session advisory lock, held by a connection of its own. SQLite: an
    exclusive lock on a file beside the database (the processes share its machine)."""
    if is_sqlite(url):
        database = make_url(url).database
        if not database or database == ":memory:":
            yield
            return
        with open(f"{database}.migrate-lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            if connection.dialect.name != "postgresql":
                yield
                return
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
    finally:
        engine.dispose()


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage on gentune's database (its tables have other names than ours)."""
    import optuna

    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if is_sqlite(url):
        engine_kwargs = {"connect_args": {"timeout": 30}}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
