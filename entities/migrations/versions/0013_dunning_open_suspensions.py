"""The dunning run's open suspensions by index: `dunning_log` (step, tenant, customer, invoice_id), so a run reads
the `suspend` rows (and, per row, whether its `reactivate` row exists, by the unique key) from indexes, never
scanning the log's reminders and late fees; scoped to one customer it reads that customer's rows only.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_dunning_log_step_tenant_customer", "dunning_log", ["step", "tenant", "customer", "invoice_id"])


def downgrade() -> None:
    op.drop_index("ix_dunning_log_step_tenant_customer", table_name="dunning_log")
