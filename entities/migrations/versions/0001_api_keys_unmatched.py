"""API keys and unmatched events.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.String(256), nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])
    op.create_table(
        "unmatched_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("source", sa.String(256), nullable=True),
        sa.Column("event_id", sa.String(256), nullable=True),
        sa.Column("event_type", sa.String(256), nullable=True),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_unmatched_tenant_type", "unmatched_events", ["tenant", "event_type"])
    op.create_index("ix_unmatched_tenant_source_id", "unmatched_events", ["tenant", "source", "event_id"])


def downgrade() -> None:
    op.drop_table("unmatched_events")
    op.drop_table("api_keys")
