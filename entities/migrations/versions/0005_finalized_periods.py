"""Finalized periods: per (tenant, customer), the end of the newest invoiced billing period (entities/finalization.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "finalized_periods",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("customer", sa.String(256), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "customer"),
    )


def downgrade() -> None:
    op.drop_table("finalized_periods")
