"""Credit notes record when their refund was paid back (entities/credit_notes.mark_refunded): status `refunded`,
`refunded_on` and the transfer's `refund_reference`.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credit_notes") as batch:
        batch.add_column(sa.Column("refunded_on", sa.Date, nullable=True))
        batch.add_column(sa.Column("refund_reference", sa.String(256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("credit_notes") as batch:
        batch.drop_column("refund_reference")
        batch.drop_column("refunded_on")
