"""Add-ons (entities/add_ons.py, docs/add-ons.md): a tenant's catalog items billed once on a one-off invoice (Lago's
`add_ons`): code unique per tenant, name, invoice display name, description, a default amount in minor units of
its currency, tax codes.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "add_ons",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("add_on_id", sa.String(26), nullable=False, unique=True),
        sa.Column("code", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("invoice_display_name", sa.String(256), nullable=True),
        sa.Column("description", sa.String(1024), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("tax_codes", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "code", name="uq_add_ons_tenant_code"),
    )


def downgrade() -> None:
    op.drop_table("add_ons")
