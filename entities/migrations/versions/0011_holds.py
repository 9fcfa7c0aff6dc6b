"""Authorization holds (docs/authorization.md): money reserved on a prepaid balance by POST /v1/authorize, one
per (tenant, customer, session id), consumed by the session's rated records, released by its final record
or ended by expiry. Amounts are decimal text.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authorization_holds",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("hold_id", sa.String(26), nullable=False, unique=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("customer", sa.String(256), nullable=False),
        sa.Column("session_id", sa.String(256), nullable=True),
        sa.Column("meter", sa.String(128), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", sa.String(40), nullable=False),
        sa.Column("consumed", sa.String(40), nullable=False),
        sa.Column("quantity", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(256), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "customer", "session_id", name="uq_authorization_holds_session"),
    )
    op.create_index("ix_authorization_holds_customer", "authorization_holds", ["tenant", "customer", "status"])


def downgrade() -> None:
    op.drop_table("authorization_holds")
