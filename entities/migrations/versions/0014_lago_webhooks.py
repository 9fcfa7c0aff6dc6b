"""Lago-format webhook endpoints (docs/lago.md "Webhooks"): an endpoint's format, signature algorithm and JWT
issuer; a delivery's own payload; each tenant's Lago signing keys.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.add_column(sa.Column("format", sa.String(16), nullable=False, server_default="standard"))
        batch.add_column(sa.Column("signature_algo", sa.String(8), nullable=True))
        batch.add_column(sa.Column("issuer", sa.String(2048), nullable=True))
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("body", sa.Text, nullable=True))
    op.create_table(
        "lago_webhook_keys",
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("hmac_key", sa.String(128), nullable=False),
        sa.Column("private_pem", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lago_webhook_keys")
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("body")
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("issuer")
        batch.drop_column("signature_algo")
        batch.drop_column("format")
