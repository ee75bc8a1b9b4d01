"""Migrations on a new database: gentune's tables and Optuna's, before any study runs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from service.db.session import get_engine, migrate, optuna_storage
from tests.conftest import new_database_url


@pytest.mark.database
def test_migrate_prepares_optunas_tables_so_concurrent_study_runs_do_not_collide(
    tmp_path: Path,
) -> None:
    url, cleanup = new_database_url(tmp_path)
    try:
        migrate(url)
        tables = set(inspect(get_engine(url)).get_table_names())
        assert {"gentune_studies", "gentune_trials", "gentune_metrics"} <= tables
        assert {"studies", "trials", "alembic_version"} <= tables  # Optuna's
        with get_engine(url).connect() as connection:
            stamped = connection.execute(text("SELECT count(*) FROM alembic_version")).scalar()
        assert stamped == 1, "Optuna's schema must be stamped before study runs start"

        errors: list[BaseException] = []

        def open_storage() -> None:  # what every study's run does first
            try:
                optuna_storage(url).engine.dispose()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_storage) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        migrate(url)  # and again on the next start: idempotent
    finally:
        cleanup()  # type: ignore[operator]
