"""trials keep their run info (dataset fingerprint, device, versions)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gentune_trials", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("run_info", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("gentune_trials", schema=None) as batch_op:
        batch_op.drop_column("run_info")
