"""Subscription lifecycle webhooks (entities/subscriptions.announce_due): each subscription keeps when it starts
and ends (`starts_at`: its first phase's start, `ends_at`: its last phase's end, null while open-ended) and what
has been announced of it (`announced`: pending | started | ended). Existing subscriptions are marked as already
announced as far as they have come, so the upgrade sends no burst of past starts and ends.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("announced", sa.String(16), nullable=True))
        batch.create_index("ix_subscriptions_announced", ["announced"])
    conn = op.get_bind()
    instant = sa.DateTime(timezone=True)
    table = sa.table("subscriptions", sa.column("id", sa.Integer), sa.column("doc", sa.Text),
                     sa.column("starts_at", instant), sa.column("ends_at", instant),
                     sa.column("announced", sa.String(16)))  # fmt: skip
    now = datetime.now(UTC)
    for sub_id, doc in conn.execute(sa.select(table.c.id, table.c.doc)).all():
        phases = msgspec.json.decode(doc).get("phases") or []
        if not phases:
            continue
        starts, ends = _instant(phases[0]["start"]), _instant(phases[-1].get("end"))
        announced = "ended" if ends is not None and ends <= now else "started" if starts <= now else "pending"
        conn.execute(sa.update(table).where(table.c.id == sub_id).values(starts_at=starts, ends_at=ends,
                                                                          announced=announced))  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_index("ix_subscriptions_announced")
        batch.drop_column("announced")
        batch.drop_column("ends_at")
        batch.drop_column("starts_at")
