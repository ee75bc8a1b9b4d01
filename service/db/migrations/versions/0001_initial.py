"""studies, trials, metrics, artifacts

Revision ID: 0001
Revises:
Create Date: 2026-11-23 13:33:45.244357
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gentune_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("trainer", sa.String(length=100), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("optuna_study_name", sa.String(length=200), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gentune_studies")),
        sa.UniqueConstraint("optuna_study_name", name=op.f("uq_gentune_studies_optuna_study_name")),
    )
    with op.batch_alter_table("gentune_studies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gentune_studies_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_gentune_studies_state"), ["state"], unique=False)

    op.create_table(
        "gentune_trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("tune_trial_id", sa.String(length=100), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("best_step", sa.Integer(), nullable=True),
        sa.Column("last_step", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("node", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["gentune_studies.id"],
            name=op.f("fk_gentune_trials_study_id_gentune_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gentune_trials")),
        sa.UniqueConstraint("study_id", "number", name=op.f("uq_gentune_trials_study_id_number")),
    )
    with op.batch_alter_table("gentune_trials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gentune_trials_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_gentune_trials_study_id"), ["study_id"], unique=False)

    op.create_table(
        "gentune_artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["gentune_trials.id"],
            name=op.f("fk_gentune_artifacts_trial_id_gentune_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gentune_artifacts")),
        sa.UniqueConstraint("trial_id", "kind", name=op.f("uq_gentune_artifacts_trial_id_kind")),
    )
    with op.batch_alter_table("gentune_artifacts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gentune_artifacts_trial_id"), ["trial_id"], unique=False
        )

    op.create_table(
        "gentune_metrics",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["gentune_trials.id"],
            name=op.f("fk_gentune_metrics_trial_id_gentune_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gentune_metrics")),
        sa.UniqueConstraint(
            "trial_id", "name", "step", name=op.f("uq_gentune_metrics_trial_id_name_step")
        ),
    )
    with op.batch_alter_table("gentune_metrics", schema=None) as batch_op:
        batch_op.create_index("ix_gentune_metrics_trial_step", ["trial_id", "step"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gentune_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_gentune_metrics_trial_step")

    op.drop_table("gentune_metrics")
    with op.batch_alter_table("gentune_artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gentune_artifacts_trial_id"))

    op.drop_table("gentune_artifacts")
    with op.batch_alter_table("gentune_trials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gentune_trials_study_id"))
        batch_op.drop_index(batch_op.f("ix_gentune_trials_state"))

    op.drop_table("gentune_trials")
    with op.batch_alter_table("gentune_studies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gentune_studies_state"))
        batch_op.drop_index(batch_op.f("ix_gentune_studies_name"))

    op.drop_table("gentune_studies")
