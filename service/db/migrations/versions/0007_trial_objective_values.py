"""trials keep a multi-objective study's objective values and whether they keep constraints

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gentune_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("values", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("feasible", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gentune_trials", schema=None) as batch_op:
        batch_op.drop_column("feasible")
        batch_op.drop_column("values")
