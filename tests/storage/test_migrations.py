"""Migrations on a new database: gentune's tables and Optuna's, before any study runs."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from gentune.service.db.session import get_engine, migrate, optuna_storage
from tests.support.databases import new_database_url


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


@pytest.mark.database
def test_processes_migrating_a_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    """`gentune serve` and every `gentune worker` migrate at start: started together on a new
    database (compose, a cluster coming up), each must end with the schema at head and none
    may fail on another's half-made tables."""
    url, cleanup = new_database_url(tmp_path)
    script = (
        "import sys, time; from service.db.session import migrate\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "migrate(sys.argv[1])\n"
    )
    try:
        start_at = str(time.time() + 3.0)  # all of them at the same moment, once imported
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", script, url, start_at],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(6)
        ]
        outputs = [p.communicate(timeout=180)[0] for p in processes]
        failed = [out for p, out in zip(processes, outputs, strict=True) if p.returncode != 0]
        assert not failed, failed[0][-3000:]
        tables = set(inspect(get_engine(url)).get_table_names())
        assert {"gentune_studies", "gentune_trials", "studies", "trials"} <= tables
        with get_engine(url).connect() as connection:
            ours = connection.execute(text("SELECT count(*) FROM gentune_alembic_version"))
            assert ours.scalar() == 1
            optunas = connection.execute(text("SELECT count(*) FROM alembic_version"))
            assert optunas.scalar() == 1
    finally:
        cleanup()  # type: ignore[operator]
