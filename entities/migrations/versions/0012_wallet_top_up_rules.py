"""Automatic top-up rules of wallets (docs/wallets.md, Lago's `recurring_transaction_rules`): a JSON list per
wallet, decimal amounts as text.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("wallets", sa.Column("recurring_rules", sa.Text, nullable=True))


def downgrade() -> None:
    # a plain DROP COLUMN (SQLite >= 3.35): a batch copy of `wallets` would trip wallet_transactions' foreign key
    op.drop_column("wallets", "recurring_rules")
