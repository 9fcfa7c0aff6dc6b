"""Lago events accepted with an error (entities/lago_event_errors.py): Lago's `events.errors` webhook reports them,
`GET /events/{transaction_id}` finds the ones no metric counted.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lago_event_errors",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("transaction_id", sa.String(256), nullable=False),
        sa.Column("code", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("field", sa.String(256), nullable=True),
        sa.Column("raw", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_lago_event_errors_tenant_transaction", "lago_event_errors", ["tenant", "transaction_id"])
    op.create_index("ix_lago_event_errors_reported_at", "lago_event_errors", ["reported_at", "id"])


def downgrade() -> None:
    op.drop_table("lago_event_errors")
