"""Lago compatibility: subscriptions (external_subscription_id -> external_customer_id per tenant).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lago_subscriptions",
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("external_subscription_id", sa.String(256), primary_key=True),
        sa.Column("external_customer_id", sa.String(256), nullable=False),
        sa.Column("lago_id", sa.String(36), nullable=False, unique=True),
        sa.Column("plan_code", sa.String(256), nullable=True),
        sa.Column("name", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_lago_subscriptions_customer", "lago_subscriptions", ["tenant", "external_customer_id"])


def downgrade() -> None:
    op.drop_table("lago_subscriptions")
