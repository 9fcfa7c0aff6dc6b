"""The value of a customer's entitlement at a time: access for boolean and static entitlements; for a metered one the
grants' burn-down (entitlements/burndown.py) over the customer's usage of the feature's meter, read from ClickHouse
(`rated_usage FINAL`, through the meter query path: api/compat/openmeter/query.py): per burn-down phase for a value,
per minute for a history (whose windows may be many)."""

from __future__ import annotations

from bisect import bisect_left
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from meterstream.api.queries import QueryError
from meterstream.entities.customers import Customer
from meterstream.entities.entitlements import Entitlement, Feature
from meterstream.entities.meters import Meter
from meterstream.entitlements.burndown import Grant, Segment, Usage, Value, first_period_start, value_at
from meterstream.entitlements.periods import Timeline, minute_up, windows

from . import query as meter_query
from .models import json_number

ZERO = Decimal(0)
MAX_WINDOWS = 10_000  # windows in one history answer


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


class Inputs(NamedTuple):
    """What a burn-down needs: the usage periods' timeline and where to begin, the grants, the usage function (None:
    not read) and the resets' overage flags."""

    timeline: Timeline
    start: datetime
    grants: list[Grant]
    usage: Usage | None
    carried: dict[datetime, bool]

    def periods(self, to: datetime) -> list[tuple[datetime, datetime]]:
        return self.timeline.periods_between(self.start, to)


def _burndown(
    service: Any, tenant: str, customer: Customer, e: Entitlement, feature: Feature, meter: Meter, t: datetime,
    since: datetime | None = None, minutes: bool = True,
) -> Inputs:  # fmt: skip
    """What a burn-down up to `t` (a whole minute) needs: the timeline and where to begin, the grants, the usage
    function over the minutes read from ClickHouse (with `minutes`; the history's way), and the resets' overage flags;
    the usage is read from where the computation must begin (`since`, if given, is included)."""
    resets = service.entitlements.resets(tenant, e.id)
    timeline = e.timeline(resets)
    assert timeline is not None
    grants = [g.grant for g in service.entitlements.grants(tenant, (e.id,))]
    carried = {r.at: r.preserve_overage for r in resets}
    preserving = e.preserve_overage or any(carried.values())
    if t < timeline.start:  # nothing measured yet: what the grants active then hold
        start = t
    else:
        start = first_period_start(timeline, grants, t, preserving)
        if since is not None and since < start:
            start = first_period_start(timeline, grants, max(since, timeline.start), preserving)
    if not minutes:
        return Inputs(timeline, start, grants, None, carried)
    stamps, values = minute_usage(service, tenant, customer, feature, meter, start, t)

    def usage(p0: datetime, p1: datetime) -> Decimal:
        return sum(values[bisect_left(stamps, p0) : bisect_left(stamps, p1)], ZERO)

    return Inputs(timeline, start, grants, usage, carried)


def metered_value(
    service: Any, tenant: str, customer: Customer, e: Entitlement, feature: Feature, meter: Meter, at: datetime
) -> Value:
    """The burn-down of the entitlement's grants as of `at` (rounded up to the minute, as OpenMeter does). The phases
    the burn-down cuts depend on the grants and periods only, not on the usage: found by a first run over no usage,
    then ClickHouse sums the usage per phase in one query, and the burn-down runs on those sums."""
    t = minute_up(at)
    b = _burndown(service, tenant, customer, e, feature, meter, t, minutes=False)
    periods = b.periods(t)
    phases: list[tuple[datetime, datetime]] = []

    def record(p0: datetime, p1: datetime) -> Decimal:
        phases.append((p0, p1))
        return ZERO

    value_at(b.grants, periods, record, t, e.preserve_overage, b.carried)
    bounds = sorted({x for phase in phases for x in phase})
    sums = phase_usage(service, tenant, customer, feature, meter, bounds) if len(bounds) > 1 else {}
    return value_at(b.grants, periods, lambda p0, p1: sums.get((p0, p1), ZERO), t, e.preserve_overage, b.carried)


def phase_usage(
    service: Any, tenant: str, customer: Customer, feature: Feature, meter: Meter, bounds: list[datetime]
) -> dict[tuple[datetime, datetime], Decimal]:
    """The customer's usage of the feature's meter (its group-by filters applied) in each span between consecutive
    `bounds`, keyed by the span; spans without usage are left out."""
    q = meter_query.MeterQuery(
        tenant=tenant, meter=meter.slug, aggregation=meter.aggregation, meter_group_by=tuple(meter.group_by),
        customers=(customer.meterstream_id,), filter_group_by=dict(feature.group_by_filters or {}),
    )  # fmt: skip
    sql, params = meter_query.bucket_plan(q, service.queries.db, bounds)
    out: dict[tuple[datetime, datetime], Decimal] = {}
    for k, v, n in service.queries.query(sql, params):
        k = int(k)
        if int(n) and 0 <= k < len(bounds) - 1:
            out[(bounds[k], bounds[k + 1])] = meter_query.value_of(meter.aggregation, str(v), int(n))
    return out


def history(
    service: Any, tenant: str, customer: Customer, e: Entitlement, feature: Feature, meter: Meter,
    frm: datetime, to: datetime, size: str, zone: ZoneInfo,
) -> dict[str, Any]:  # fmt: skip
    """OpenMeter's WindowedBalanceHistory over [frm, to) (whole minutes): per window (in `zone`) its usage and the
    balance at its start; and the burn-down's segments (cut where grants start, end, recur or a period begins)."""
    b = _burndown(service, tenant, customer, e, feature, meter, to, frm)
    assert b.usage is not None
    periods = b.periods(to)
    unit = {"MINUTE": timedelta(minutes=1), "HOUR": timedelta(hours=1)}.get(size, timedelta(days=1))
    if (to - frm) / unit > MAX_WINDOWS:
        raise QueryError("windowSize", f"more than {MAX_WINDOWS} windows: take a larger window or a shorter span")
    spans = [(w0, w1) for w0, w1 in windows(frm, to, size, zone) if w0 >= b.timeline.start]
    fine: list[Segment] = []
    cuts = [w for span in spans for w in span]
    value_at(b.grants, periods, b.usage, to, e.preserve_overage, b.carried, cuts=cuts, trace=fine)
    windowed = []
    for w0, w1 in spans:
        inside = [g for g in fine if w0 <= g.start < w1]
        at_start = sum(inside[0].balances_at_start.values(), ZERO) if inside else ZERO
        used = sum((g.usage for g in inside), ZERO)
        windowed.append({"period": {"from": _t(w0), "to": _t(w1)}, "usage": json_number(used),
                         "balanceAtStart": json_number(at_start)})  # fmt: skip
    segments: list[Segment] = []
    value_at(b.grants, periods, b.usage, to, e.preserve_overage, b.carried, trace=segments)
    burndown = [_segment_json(g) for g in segments if g.end > frm]
    return {"windowedHistory": windowed, "burndownHistory": burndown}


def _segment_json(g: Segment) -> dict[str, Any]:
    return {
        "period": {"from": _t(g.start), "to": _t(g.end)}, "usage": json_number(g.usage),
        "overage": json_number(g.overage),
        "balanceAtStart": json_number(sum(g.balances_at_start.values(), ZERO)),
        "grantBalancesAtStart": {k: json_number(v) for k, v in g.balances_at_start.items()},
        "balanceAtEnd": json_number(sum(g.balances_at_end.values(), ZERO)),
        "grantBalancesAtEnd": {k: json_number(v) for k, v in g.balances_at_end.items()},
        "grantUsages": [{"grantId": k, "usage": json_number(v)} for k, v in g.grant_usages.items()],
    }  # fmt: skip


def _t(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


__all__ = ["history", "metered_value", "minute_usage", "now_utc", "value_json"]
