"""people rate trials' samples: scores of 1-5 and pairwise picks, with who gave them

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gentune_ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("better_than", sa.Integer(), nullable=True),
        sa.Column("rater", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["gentune_trials.id"],
            name=op.f("fk_gentune_ratings_trial_id_gentune_trials"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["better_than"],
            ["gentune_trials.id"],
            name=op.f("fk_gentune_ratings_better_than_gentune_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gentune_ratings")),
    )
    op.create_index(
        op.f("ix_gentune_ratings_trial_id"), "gentune_ratings", ["trial_id"], unique=False
    )
    with op.batch_alter_table("gentune_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rating_mean", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("rating_count", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("wins", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("losses", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("gentune_trials", schema=None) as batch_op:
        batch_op.drop_column("losses")
        batch_op.drop_column("wins")
        batch_op.drop_column("rating_count")
        batch_op.drop_column("rating_mean")
    op.drop_index(op.f("ix_gentune_ratings_trial_id"), table_name="gentune_ratings")
    op.drop_table("gentune_ratings")
