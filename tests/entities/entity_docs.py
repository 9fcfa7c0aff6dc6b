"""Small builders of entity documents for the entity tests (plain values, written by hand)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from meterstream.schemas.entities import CustomerDoc, FixedCharge, Phase, PlanVersionDoc, SubscriptionDoc

TENANT = "acme"


def at(day: int, month: int = 1, year: int = 2026, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def customer(external_id: str = "c1", **kw: Any) -> CustomerDoc:
    fields: dict[str, Any] = {"tenant": TENANT, "external_id": external_id, "name": "Acme GmbH", "version": 0}
    fields.update(kw)
    return CustomerDoc(**fields)


def plan(code: str = "basic", **kw: Any) -> PlanVersionDoc:
    fields: dict[str, Any] = {
        "tenant": TENANT,
        "code": code,
        "version": 0,
        "name": code.title(),
        "currency": "USD",
        "usage": {"api_calls": {"model": "unit", "unit_amount": "0.001"}},
        "fixed": [FixedCharge(code="base", name="Base fee", amount=Decimal("10.00"))],
    }
    fields.update(kw)
    return PlanVersionDoc(**fields)


def phase(code: str = "basic", version: int = 1, start: datetime | None = None, end: datetime | None = None,
          **kw: Any) -> Phase:  # fmt: skip
    return Phase(plan_code=code, plan_version=version, start=start or at(1), end=end, **kw)


def subscription(external_id: str = "s1", customer_id: str = "c1", phases: list[Phase] | None = None,
                 **kw: Any) -> SubscriptionDoc:  # fmt: skip
    fields: dict[str, Any] = {
        "tenant": TENANT, "external_id": external_id, "customer": customer_id, "version": 0,
        "phases": [phase()] if phases is None else phases,
    }  # fmt: skip
    fields.update(kw)
    return SubscriptionDoc(**fields)


def outbox_count(sf: Any) -> int:
    from meterstream.entities.outbox import last_seq

    return last_seq(sf)
