"""studies record the token name that submitted them, and the one that cancelled them

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gentune_studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("submitted_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("cancelled_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gentune_studies", schema=None) as batch_op:
        batch_op.drop_column("cancelled_by")
        batch_op.drop_column("submitted_by")
