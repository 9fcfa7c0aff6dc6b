"""The value of a customer's entitlement at a time: access for boolean and static entitlements; for a metered one the
grants' burn-down (entitlements/burndown.py) over the customer's usage of the feature's meter, read from ClickHouse
(`rated_usage FINAL`, through the meter query path: api/compat/openmeter/query.py) minute by minute."""

from __future__ import annotations

from bisect import bisect_left
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from meterstream.entities.customers import Customer
from meterstream.entities.entitlements import Entitlement, Feature
from meterstream.entities.meters import Meter
from meterstream.entitlements.burndown import Value, first_period_start, value_at
from meterstream.entitlements.periods import minute_up

from . import query as meter_query
from .models import json_number

ZERO = Decimal(0)


def minute_usage(
    service: Any, tenant: str, customer: Customer, feature: Feature, meter: Meter, start: datetime, end: datetime
) -> tuple[list[datetime], list[Decimal]]:
    """The customer's usage of the feature's meter (its group-by filters applied) per minute in [start, end): the
    minutes with usage, in order, and their exact values."""
    if end <= start:
        return [], []
    q = meter_query.MeterQuery(
        tenant=tenant, meter=meter.slug, aggregation=meter.aggregation, meter_group_by=tuple(meter.group_by),
        start=start, end=end, window_size="MINUTE", customers=(customer.meterstream_id,),
        filter_group_by=dict(feature.group_by_filters or {}),
    )  # fmt: skip
    sql, params, names = meter_query.plan(q, service.queries.db)
    rows = meter_query.rows(q, names, service.queries.query(sql, params))
    minutes = sorted((datetime.fromisoformat(r["windowStart"]), r["value"]) for r in rows)
    return [m for m, _ in minutes], [v for _, v in minutes]


def metered_value(
    service: Any, tenant: str, customer: Customer, e: Entitlement, feature: Feature, meter: Meter, at: datetime
) -> Value:
    """The burn-down of the entitlement's grants as of `at` (rounded up to the minute, as OpenMeter does)."""
    resets = service.entitlements.resets(tenant, e.id)
    timeline = e.timeline(resets)
    assert timeline is not None
    t = minute_up(at)
    grants = [g.grant for g in service.entitlements.grants(tenant, (e.id,))]
    carried = {r.at: r.preserve_overage for r in resets}
    if t < timeline.start:  # nothing measured yet: what the grants active then hold
        start = t
    else:
        preserving = e.preserve_overage or any(carried.values())
        start = first_period_start(timeline, grants, t, preserving)
    minutes, values = minute_usage(service, tenant, customer, feature, meter, start, t)

    def usage(p0: datetime, p1: datetime) -> Decimal:
        return sum(values[bisect_left(minutes, p0) : bisect_left(minutes, p1)], ZERO)

    return value_at(grants, timeline.periods_between(start, t), usage, t, e.preserve_overage, carried)


def value_json(e: Entitlement | None, value: Value | None, v2: bool) -> dict[str, Any]:
    """OpenMeter's EntitlementValue (v1) or EntitlementValueV2 (with each active grant's balance)."""
    if e is None:
        return {"hasAccess": False}
    if e.type == "boolean":
        return {"hasAccess": True}
    if e.type == "static":
        return {"hasAccess": True, "config": e.config}
    assert value is not None
    body: dict[str, Any] = {
        "hasAccess": e.is_soft_limit or value.balance > 0,
        "balance": json_number(value.balance), "usage": json_number(value.usage),
        "overage": json_number(value.overage), "totalAvailableGrantAmount": json_number(value.total_available),
    }  # fmt: skip
    if v2:
        body["grantBalances"] = {k: json_number(v) for k, v in value.grant_balances.items()}
    return body


def now_utc() -> datetime:
    return datetime.now(UTC)


__all__ = ["metered_value", "minute_usage", "now_utc", "value_json"]
