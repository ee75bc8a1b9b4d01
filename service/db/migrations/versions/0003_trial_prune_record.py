"""pruned trials keep what stopped them: the rule or pruner, the step, the values

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gentune_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pruned_by", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("pruned_step", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("prune_values", sa.JSON(), nullable=True))
        batch_op.create_index("ix_gentune_trials_pruned_by", ["pruned_by"])


def downgrade() -> None:
    with op.batch_alter_table("gentune_trials", schema=None) as batch_op:
        batch_op.drop_index("ix_gentune_trials_pruned_by")
        batch_op.drop_column("prune_values")
        batch_op.drop_column("pruned_step")
        batch_op.drop_column("pruned_by")
