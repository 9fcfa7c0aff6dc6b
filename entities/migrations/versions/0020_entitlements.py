"""OpenMeter's features, entitlements, grants and usage resets (entities/entitlements.py, docs/entitlements.md).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "features",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("meter_slug", sa.String(128), nullable=True),
        sa.Column("group_by_filters", sa.JSON, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("archived_at", _WHEN, nullable=True),
    )
    op.create_index(
        "uq_features_tenant_key_active", "features", ["tenant", "key"], unique=True,
        sqlite_where=sa.text("archived_at IS NULL"), postgresql_where=sa.text("archived_at IS NULL"),
    )  # fmt: skip
    op.create_table(
        "entitlements",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(26), nullable=False),
        sa.Column("feature_id", sa.String(26), nullable=False),
        sa.Column("feature_key", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("config", sa.Text, nullable=True),
        sa.Column("usage_interval", sa.String(16), nullable=True),
        sa.Column("usage_anchor", _WHEN, nullable=True),
        sa.Column("is_soft_limit", sa.Boolean, nullable=False),
        sa.Column("preserve_overage", sa.Boolean, nullable=False),
        sa.Column("measure_usage_from", _WHEN, nullable=True),
        sa.Column("issue_amount", sa.String(64), nullable=True),
        sa.Column("issue_priority", sa.Integer, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("deleted_at", _WHEN, nullable=True),
    )
    op.create_index("uq_entitlements_customer_feature_active", "entitlements", ["tenant", "customer_id", "feature_key"],
                    unique=True, sqlite_where=sa.text("deleted_at IS NULL"),
                    postgresql_where=sa.text("deleted_at IS NULL"))  # fmt: skip
    op.create_table(
        "entitlement_grants",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("entitlement_id", sa.String(26), nullable=False),
        sa.Column("amount", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("effective_at", _WHEN, nullable=False),
        sa.Column("expiration_duration", sa.String(8), nullable=True),
        sa.Column("expiration_count", sa.Integer, nullable=True),
        sa.Column("expires_at", _WHEN, nullable=True),
        sa.Column("max_rollover", sa.String(64), nullable=False),
        sa.Column("min_rollover", sa.String(64), nullable=False),
        sa.Column("recurrence_interval", sa.String(16), nullable=True),
        sa.Column("recurrence_anchor", _WHEN, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("annotations", sa.JSON, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("voided_at", _WHEN, nullable=True),
    )
    op.create_index("ix_entitlement_grants_entitlement", "entitlement_grants", ["tenant", "entitlement_id"])
    op.create_table(
        "entitlement_resets",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("entitlement_id", sa.String(26), nullable=False),
        sa.Column("reset_at", _WHEN, nullable=False),
        sa.Column("anchor", _WHEN, nullable=False),
        sa.Column("preserve_overage", sa.Boolean, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
    )
    op.create_index("ix_entitlement_resets_entitlement", "entitlement_resets", ["tenant", "entitlement_id"])


def downgrade() -> None:
    op.drop_table("entitlement_resets")
    op.drop_table("entitlement_grants")
    op.drop_table("entitlements")
    op.drop_table("features")
