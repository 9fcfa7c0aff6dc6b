"""Collections (dunning): policies per tenant and per customer, the log of the steps done per overdue
invoice, and the pending charges (late fees waiting for the customer's next invoice). docs/dunning.md.

- ``dunning_policies``: one row per (tenant, customer); ``customer`` = "" is the tenant's default.
  ``reminder_days`` is a JSON list of day offsets after the due date (e.g. [3, 7, 14]); the late fee is
  ``late_fee_kind`` none / fixed / percent with ``late_fee_value`` (a decimal string: an amount in the
  invoice currency, or a percentage of the amount due), charged first ``late_fee_after_days`` after the due
  date and then every ``late_fee_period_days`` (NULL: once); ``late_fee_max_periods`` caps the count (NULL:
  no cap); ``suspend_after_last`` sends a provisioning ``suspend`` after the last reminder.
- ``dunning_log``: one row per (tenant, invoice, step) done; the unique key makes a re-run of the billing
  run skip a step already done (steps: ``reminder:1``, ``late_fee:1``, ``suspend``, ``reactivate``).
- ``dunning_charges``: late fees pending for the next invoice; unique per (tenant, source invoice, step);
  ``billed_invoice_id`` is set when the close bills them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dunning_policies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("customer", sa.String(256), nullable=False),
        sa.Column("reminder_days", sa.JSON, nullable=False),
        sa.Column("late_fee_kind", sa.String(16), nullable=False),
        sa.Column("late_fee_value", sa.String(40), nullable=True),
        sa.Column("late_fee_after_days", sa.Integer, nullable=True),
        sa.Column("late_fee_period_days", sa.Integer, nullable=True),
        sa.Column("late_fee_max_periods", sa.Integer, nullable=True),
        sa.Column("suspend_after_last", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "customer", name="uq_dunning_policies_tenant_customer"),
    )
    op.create_table(
        "dunning_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("invoice_id", sa.String(256), nullable=False),
        sa.Column("customer", sa.String(256), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("due_on", sa.Date, nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notification_id", sa.String(128), nullable=True),
        sa.Column("detail", sa.JSON, nullable=True),
        sa.UniqueConstraint("tenant", "invoice_id", "step", name="uq_dunning_log_tenant_invoice_step"),
    )
    op.create_index("ix_dunning_log_tenant_customer", "dunning_log", ["tenant", "customer"])
    op.create_table(
        "dunning_charges",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("customer", sa.String(256), nullable=False),
        sa.Column("source_invoice_id", sa.String(256), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("description", sa.String(512), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("due_on", sa.Date, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("billed_invoice_id", sa.String(256), nullable=True),
        sa.Column("billed_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("tenant", "source_invoice_id", "step", name="uq_dunning_charges_source_step"),
    )
    op.create_index(
        "ix_dunning_charges_tenant_customer", "dunning_charges", ["tenant", "customer", "billed_invoice_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_dunning_charges_tenant_customer", table_name="dunning_charges")
    op.drop_table("dunning_charges")
    op.drop_index("ix_dunning_log_tenant_customer", table_name="dunning_log")
    op.drop_table("dunning_log")
    op.drop_table("dunning_policies")
