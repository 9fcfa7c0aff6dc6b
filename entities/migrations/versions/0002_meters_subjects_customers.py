"""Meter definitions, subjects, customers and their usage attribution (OpenMeter compatibility).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ACTIVE = "deleted_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "meter_definitions",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("slug", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=True),
        sa.Column("description", sa.String(1024), nullable=True),
        sa.Column("event_type", sa.String(256), nullable=False),
        sa.Column("aggregation", sa.String(16), nullable=False),
        sa.Column("value_property", sa.String(1024), nullable=True),
        sa.Column("group_by", sa.JSON, nullable=False),
        sa.Column("event_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "uq_meter_definitions_tenant_slug_active", "meter_definitions", ["tenant", "slug"], unique=True,
        sqlite_where=sa.text(_ACTIVE), postgresql_where=sa.text(_ACTIVE),
    )  # fmt: skip
    op.create_index("ix_meter_definitions_tenant_type", "meter_definitions", ["tenant", "event_type"])

    op.create_table(
        "subjects",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("current_period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stripe_customer_id", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "key", name="uq_subjects_tenant_key"),
    )

    op.create_table(
        "customers",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("key", sa.String(256), nullable=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("description", sa.String(1024), nullable=True),
        sa.Column("primary_email", sa.String(256), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_customers_tenant", "customers", ["tenant"])
    keyed = "deleted_at IS NULL AND key IS NOT NULL"
    op.create_index(
        "uq_customers_tenant_key_active", "customers", ["tenant", "key"], unique=True,
        sqlite_where=sa.text(keyed), postgresql_where=sa.text(keyed),
    )  # fmt: skip

    op.create_table(
        "customer_subjects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("subject_key", sa.String(256), nullable=False),
        sa.Column("customer_id", sa.String(26), sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
        sa.UniqueConstraint("tenant", "subject_key", name="uq_customer_subjects_tenant_subject"),
    )
    op.create_index("ix_customer_subjects_customer_id", "customer_subjects", ["customer_id"])


def downgrade() -> None:
    op.drop_table("customer_subjects")
    op.drop_table("customers")
    op.drop_table("subjects")
    op.drop_table("meter_definitions")
