"""Alembic environment: gentune's tables only, versioned in their own table."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from gentune.service.db import models  # noqa: F401  (registers the tables on Base.metadata)
from gentune.service.db.base import TABLE_PREFIX, Base
from gentune.service.db.session import VERSION_TABLE

config = context.config


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # Optuna's tables live in the same database; never touch them.
    if type_ == "table":
        return bool(name and name.startswith(TABLE_PREFIX))
    return True


def run_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            version_table=VERSION_TABLE,
            include_object=include_object,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
