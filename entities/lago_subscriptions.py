"""Lago subscriptions: which customer a Lago `external_subscription_id` belongs to (model + repository).

Lago events usually name only the subscription; Meterstream charges customers. `POST
/compat/lago/api/v1/subscriptions` records (tenant, external_id) -> external_customer_id here, and the
Lago event path resolves a customer as: the event's `external_customer_id` if given, else this
mapping, else the customer of the store's subscription of that external id (a subscription made through
the own API or `catalog apply`), else the subscription id itself (docs/lago.md). A Lago subscription
with a plan (api/compat/lago/subscriptions.py) is a store subscription AND a row here, whose `lago_id`
is its Lago id; one recorded without a plan is only a row here (pricing from the catalog file).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import DateTime, String, select
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from meterstream.entities.common import aware
from meterstream.entities.db import Base
from meterstream.entities.subscriptions import DEFAULT_CUSTOMER, SubscriptionRow


class LagoSubscriptionRow(Base):
    __tablename__ = "lago_subscriptions"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    external_subscription_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    external_customer_id: Mapped[str] = mapped_column(String(256))
    lago_id: Mapped[str] = mapped_column(String(36), unique=True)
    plan_code: Mapped[str | None] = mapped_column(String(256), nullable=True)
    name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class LagoSubscription:
    tenant: str
    external_subscription_id: str
    external_customer_id: str
    lago_id: str
    plan_code: str | None
    name: str | None
    created_at: datetime


class SubscriptionConflict(ValueError):
    """The subscription id is already recorded for another customer."""

    def __init__(self, existing: LagoSubscription) -> None:
        super().__init__(
            f"subscription {existing.external_subscription_id} belongs to customer {existing.external_customer_id}"
        )
        self.existing = existing


def _info(row: LagoSubscriptionRow) -> LagoSubscription:
    return LagoSubscription(
        row.tenant, row.external_subscription_id, row.external_customer_id, row.lago_id, row.plan_code, row.name,
        aware(row.created_at),  # type: ignore[arg-type]
    )  # fmt: skip


class LagoSubscriptionRepository:
    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def create(
        self, tenant: str, external_subscription_id: str, external_customer_id: str,
        plan_code: str | None = None, name: str | None = None,
    ) -> tuple[LagoSubscription, bool]:  # fmt: skip
        """Record a subscription; idempotent by (tenant, external_subscription_id), as Lago's `external_id` is.

        Returns (subscription, created). The same id for another customer raises `SubscriptionConflict`;
        for the same customer, a new plan_code or name updates the row.
        """
        with self._sessions.begin() as s:
            row = s.get(LagoSubscriptionRow, (tenant, external_subscription_id))
            if row is not None:
                if row.external_customer_id != external_customer_id:
                    raise SubscriptionConflict(_info(row))
                if plan_code is not None:
                    row.plan_code = plan_code
                if name is not None:
                    row.name = name
                return _info(row), False
            row = LagoSubscriptionRow(
                tenant=tenant, external_subscription_id=external_subscription_id,
                external_customer_id=external_customer_id, lago_id=str(uuid.uuid4()), plan_code=plan_code,
                name=name, created_at=datetime.now(UTC),
            )  # fmt: skip
            s.add(row)
            s.flush()
            return _info(row), True

    def get(self, tenant: str, external_subscription_id: str) -> LagoSubscription | None:
        with self._sessions() as s:
            row = s.get(LagoSubscriptionRow, (tenant, external_subscription_id))
            return _info(row) if row is not None else None

    def customers(self, tenant: str, external_subscription_ids: Iterable[str]) -> dict[str, str]:
        """external_subscription_id -> external_customer_id for the ids that are recorded (one query)."""
        ids = sorted(set(external_subscription_ids))
        if not ids:
            return {}
        out: dict[str, str] = {}
        with self._sessions() as s:
            for start in range(0, len(ids), 500):  # bounded IN lists, portable to every database
                stmt = select(LagoSubscriptionRow.external_subscription_id, LagoSubscriptionRow.external_customer_id)
                stmt = stmt.where(
                    LagoSubscriptionRow.tenant == tenant,
                    LagoSubscriptionRow.external_subscription_id.in_(ids[start : start + 500]),
                )
                out.update((sub, customer) for sub, customer in s.execute(stmt))
            missing = [i for i in ids if i not in out]
            for start in range(0, len(missing), 500):  # subscriptions of the store (own API, catalog apply)
                store = select(SubscriptionRow.external_id, SubscriptionRow.customer).where(
                    SubscriptionRow.tenant == tenant,
                    SubscriptionRow.external_id.in_(missing[start : start + 500]),
                    SubscriptionRow.customer != DEFAULT_CUSTOMER,
                )
                out.update((sub, customer) for sub, customer in s.execute(store))
        return out

    def list(self, tenant: str, external_customer_id: str | None = None) -> list[LagoSubscription]:
        stmt = select(LagoSubscriptionRow).where(LagoSubscriptionRow.tenant == tenant)
        if external_customer_id is not None:
            stmt = stmt.where(LagoSubscriptionRow.external_customer_id == external_customer_id)
        stmt = stmt.order_by(LagoSubscriptionRow.created_at, LagoSubscriptionRow.external_subscription_id)
        with self._sessions() as s:
            return [_info(r) for r in s.scalars(stmt)]
