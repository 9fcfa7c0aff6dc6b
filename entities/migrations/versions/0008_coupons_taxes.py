"""Coupons, the coupons applied to customers, taxes and the customers' own tax codes (docs/coupons.md,
docs/taxes.md).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coupons",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("coupon_id", sa.String(26), nullable=False, unique=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("code", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("description", sa.String(1024), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("percent_off", sa.String(40), nullable=True),
        sa.Column("amount_off", sa.String(40), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("duration", sa.String(16), nullable=False),
        sa.Column("duration_periods", sa.Integer, nullable=True),
        sa.Column("applies_to", sa.JSON, nullable=True),
        sa.Column("reusable", sa.Boolean, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("terminated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "uq_coupons_tenant_code_live",
        "coupons",
        ["tenant", "code"],
        unique=True,
        sqlite_where=sa.text("terminated_at IS NULL"),
        postgresql_where=sa.text("terminated_at IS NULL"),
    )
    op.create_table(
        "applied_coupons",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("applied_id", sa.String(26), nullable=False, unique=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("customer", sa.String(256), nullable=False),
        sa.Column("coupon_ref", sa.Integer, sa.ForeignKey("coupons.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("terminated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("percent_off", sa.String(40), nullable=True),
        sa.Column("amount_off", sa.String(40), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("duration", sa.String(16), nullable=True),
        sa.Column("duration_periods", sa.Integer, nullable=True),
    )
    op.create_index("ix_applied_coupons_tenant_customer", "applied_coupons", ["tenant", "customer", "status"])
    op.create_index("ix_applied_coupons_coupon_ref", "applied_coupons", ["coupon_ref"])

    op.create_table(
        "taxes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tax_id", sa.String(26), nullable=False, unique=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("code", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("rate", sa.String(40), nullable=False),
        sa.Column("description", sa.String(1024), nullable=True),
        sa.Column("applied_to_organization", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "code", name="uq_taxes_tenant_code"),
    )
    op.create_table(
        "customer_taxes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("customer", sa.String(256), nullable=False),
        sa.Column("code", sa.String(128), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.UniqueConstraint("tenant", "customer", "code", name="uq_customer_taxes_tenant_customer_code"),
    )


def downgrade() -> None:
    op.drop_table("customer_taxes")
    op.drop_table("taxes")
    op.drop_table("applied_coupons")
    op.drop_table("coupons")
