"""Billing entities: customer billing details + version, plan versions, subscriptions and their phases,
the entity outbox (with its write-lock row) and the relay position.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY is SQLite's autoincrement


def upgrade() -> None:
    # customers: one table for every API; ADD COLUMN with constant defaults is portable (no table rebuild)
    op.add_column("customers", sa.Column("legal_name", sa.String(256), nullable=True))
    op.add_column("customers", sa.Column("tax_id", sa.String(64), nullable=True))
    op.add_column("customers", sa.Column("country", sa.String(2), nullable=True))
    op.add_column("customers", sa.Column("address", sa.JSON, nullable=True))
    op.add_column("customers", sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"))
    op.add_column("customers", sa.Column("invoice_grace_days", sa.Integer, nullable=False, server_default="0"))
    op.add_column("customers", sa.Column("payment_terms_days", sa.Integer, nullable=False, server_default="0"))
    op.add_column("customers", sa.Column("version", sa.Integer, nullable=False, server_default="1"))

    op.create_table(
        "plan_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("code", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("addon", sa.Boolean, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("tenant", "code", "version", name="uq_plan_versions_tenant_code_version"),
    )

    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("external_id", sa.String(256), nullable=False),
        sa.Column("customer", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "external_id", name="uq_subscriptions_tenant_external_id"),
    )
    op.create_table(
        "subscription_phases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.Integer, sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("customer", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("plan_code", sa.String(128), nullable=False),
        sa.Column("plan_version", sa.Integer, nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_subscription_phases_subscription_id", "subscription_phases", ["subscription_id"])
    op.create_index("ix_subscription_phases_plan", "subscription_phases", ["tenant", "plan_code"])
    op.create_index("ix_subscription_phases_customer", "subscription_phases", ["tenant", "customer"])

    op.create_table(
        "entity_outbox",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("key", sa.LargeBinary, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    head = op.create_table(
        "entity_outbox_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("writes", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "writes": 0}])
    op.create_table(
        "relay_position",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("relay_position")
    op.drop_table("entity_outbox_head")
    op.drop_table("entity_outbox")
    op.drop_table("subscription_phases")
    op.drop_table("subscriptions")
    op.drop_table("plan_versions")
    with op.batch_alter_table("customers") as batch:
        for column in (
            "version", "payment_terms_days", "invoice_grace_days", "timezone", "address", "country", "tax_id",
            "legal_name",
        ):  # fmt: skip
            batch.drop_column(column)
