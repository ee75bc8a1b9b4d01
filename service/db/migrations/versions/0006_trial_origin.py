"""trials record where a config given in advance came from (points_to_evaluate, warm start)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gentune_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gentune_trials", schema=None) as batch_op:
        batch_op.drop_column("origin")
