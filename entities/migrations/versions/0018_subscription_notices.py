"""Subscription notices (entities/subscriptions.announce_due): `subscription.trial_ended` once the trial is over and
`subscription.termination_alert` 45, 15 and 1 day(s) before a known end, as Lago sends them. Each subscription keeps
its trial end (`trial_ends_at`) and the notices sent (`notices`: ` trial end45 end15 end1 `, space-delimited).
Existing subscriptions are marked as having had the notices whose time has passed, so the upgrade sends no burst.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None
ALERT_DAYS = (45, 15, 1)  # entities/subscriptions.TERMINATION_ALERT_DAYS when this was written


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("trial_ends_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("notices", sa.String(64), nullable=True))
    conn = op.get_bind()
    instant = sa.DateTime(timezone=True)
    table = sa.table("subscriptions", sa.column("id", sa.Integer), sa.column("doc", sa.Text),
                     sa.column("trial_ends_at", instant), sa.column("notices", sa.String(64)))  # fmt: skip
    now = datetime.now(UTC)
    for sub_id, doc in conn.execute(sa.select(table.c.id, table.c.doc)).all():
        data = msgspec.json.decode(doc)
        phases = data.get("phases") or []
        trial_end, ends = _instant(data.get("trial_end")), _instant(phases[-1].get("end")) if phases else None
        sent = ["trial"] if trial_end is not None and trial_end <= now else []
        sent += [f"end{d}" for d in ALERT_DAYS if ends is not None and ends - timedelta(days=d) <= now]
        conn.execute(sa.update(table).where(table.c.id == sub_id).values(
            trial_ends_at=trial_end, notices=f" {' '.join(sent)} " if sent else None))  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("notices")
        batch.drop_column("trial_ends_at")
