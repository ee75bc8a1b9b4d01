"""trials keep where and when they ran (Ray node, GPUs, start) and how many attempts they took;
studies count their claims

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gentune_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ray_node_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("gpu_ids", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("gentune_studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claims", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("gentune_studies", schema=None) as batch_op:
        batch_op.drop_column("claims")
    with op.batch_alter_table("gentune_trials", schema=None) as batch_op:
        batch_op.drop_column("attempts")
        batch_op.drop_column("started_at")
        batch_op.drop_column("gpu_ids")
        batch_op.drop_column("ray_node_id")
