"""Persistence: SQLAlchemy models, the repository (all SQL), sessions and Alembic migrations."""
