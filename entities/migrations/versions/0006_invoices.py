"""Invoices with a lifecycle, their gapless number counters, credit notes and payments (docs/invoice-lifecycle.md).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("invoice_id", sa.String(256), nullable=False),
        sa.Column("customer", sa.String(256), nullable=False),
        sa.Column("period", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total_minor", sa.BigInteger, nullable=False),
        sa.Column("billed_minor", sa.BigInteger, nullable=False),
        sa.Column("credited_minor", sa.BigInteger, nullable=False),
        sa.Column("paid_minor", sa.BigInteger, nullable=False),
        sa.Column("amount_due_minor", sa.BigInteger, nullable=False),
        sa.Column("issue_date", sa.Date, nullable=False),
        sa.Column("due_date", sa.Date, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("issuer", sa.String(32), nullable=True),
        sa.Column("series", sa.String(32), nullable=True),
        sa.Column("number", sa.String(64), nullable=True),
        sa.Column("finalized_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("void_reason", sa.String(1024), nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "invoice_id", name="uq_invoices_tenant_invoice_id"),
    )
    op.create_index("uq_invoices_tenant_number", "invoices", ["tenant", "number"], unique=True)
    op.create_index("ix_invoices_tenant_customer", "invoices", ["tenant", "customer"])
    op.create_index("ix_invoices_status_due_date", "invoices", ["status", "due_date"])
    op.create_index("ix_invoices_tenant_issue_date", "invoices", ["tenant", "issue_date"])

    op.create_table(
        "invoice_numbers",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("issuer", sa.String(32), nullable=False),
        sa.Column("series", sa.String(32), nullable=False),
        sa.Column("year", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("last", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "issuer", "series", "year"),
    )

    op.create_table(
        "credit_notes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("credit_note_id", sa.String(256), nullable=False),
        sa.Column("invoice_id", sa.String(256), nullable=False),
        sa.Column("invoice_number", sa.String(64), nullable=False),
        sa.Column("customer", sa.String(256), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(1024), nullable=False),
        sa.Column("lines", sa.Text, nullable=False),
        sa.Column("total_minor", sa.BigInteger, nullable=False),
        sa.Column("credit_minor", sa.BigInteger, nullable=False),
        sa.Column("refund_minor", sa.BigInteger, nullable=False),
        sa.Column("issue_date", sa.Date, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "credit_note_id", name="uq_credit_notes_tenant_credit_note_id"),
        sa.UniqueConstraint("tenant", "number", name="uq_credit_notes_tenant_number"),
    )
    op.create_index("ix_credit_notes_tenant_invoice", "credit_notes", ["tenant", "invoice_id"])
    op.create_index("ix_credit_notes_tenant_issue_date", "credit_notes", ["tenant", "issue_date"])

    op.create_table(
        "payments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("reference", sa.String(256), nullable=False),
        sa.Column("customer", sa.String(256), nullable=False),
        sa.Column("invoice_id", sa.String(256), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("paid_on", sa.Date, nullable=False),
        sa.Column("allocations", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "reference", name="uq_payments_tenant_reference"),
    )
    op.create_index("ix_payments_tenant_paid_on", "payments", ["tenant", "paid_on"])
    op.create_index("ix_payments_tenant_customer", "payments", ["tenant", "customer"])


def downgrade() -> None:
    op.drop_table("payments")
    op.drop_table("credit_notes")
    op.drop_table("invoice_numbers")
    op.drop_table("invoices")
