"""Streaming rating: the amount an event adds to its customer's period total, from the one pricing engine.

State is a mapping shared with dedup (a faust table in production, a dict in tests). The cumulative
quantity per (tenant, customer, meter, period) carries the source offset that last moved it, so a
replay after a crash never applies the same event twice.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from decimal import Decimal
from typing import Any

from meterstream.rating.catalog import Plan, PlanSource
from meterstream.rating.engine import delta
from meterstream.rating.money import EXACT
from meterstream.rating.telecom import NoRate, rate_cdr
from meterstream.schemas.errors import FieldReasonError
from meterstream.schemas.event import QUANTITY_MAX, QUANTITY_MAX_INTEGER_DIGITS, QUANTITY_SCALE, UsageEvent
from meterstream.schemas.rated import RatedUsage

CUMULATIVE_PREFIX = "c|"
# rated_usage.amount is Decimal(38, 18) (aggregation/schema.sql): 20 integer digits. ClickHouse refuses a
# larger value, which would block the sink's whole insert, so such an event is dead-lettered here.
# (It truncates fractional digits beyond 18 silently; amounts are recomputed exactly at period close.)
AMOUNT_SCALE = 18
AMOUNT_MAX_INTEGER_DIGITS = 38 - AMOUNT_SCALE
AMOUNT_MAX = Decimal("9" * AMOUNT_MAX_INTEGER_DIGITS + "." + "9" * AMOUNT_SCALE)
_ADD = EXACT.add  # running totals: exact (a 38-digit sum rounds in the default 28-digit context)


class RatingError(FieldReasonError):
    """The event is valid but cannot be rated (no plan, meter not priced...): it goes to the dead letters."""


def cumulative_key(tenant: str, customer: str, meter: str, period: str) -> str:
    return f"{CUMULATIVE_PREFIX}{tenant}\x1f{customer}\x1f{meter}\x1f{period}"


def rate_event(
    catalog: PlanSource,
    state: MutableMapping[str, Any],
    event: UsageEvent,
    partition: int,
    offset: int,
) -> tuple[RatedUsage, list[tuple[str, Any]]]:
    """Price `event` against the running period total; returns the record and the state writes to apply.

    Raises RatingError when the event cannot be rated. The state is only read here; the caller writes.
    """
    plan = catalog.plan_for(event.tenant, event.customer, event.meter, event.time)
    if plan is None:
        raise RatingError("customer", catalog.no_plan_reason(event.tenant, event.customer, event.time))
    time = event.time_text
    # billing period: a live subscription's own (in its customer's time zone), else the UTC calendar month
    period = catalog.period_for(event.tenant, event.customer, event.meter, event.time) or time[:7]
    key = cumulative_key(event.tenant, event.customer, event.meter, period)
    current = state.get(key)
    before = Decimal(current[0]) if current is not None else None
    after = _ADD(before, event.quantity) if before is not None else event.quantity
    if after > QUANTITY_MAX:
        raise RatingError(
            "quantity",
            f"the {period} total of meter {event.meter!r} would be {format(after, 'f')}, more than the"
            f" {QUANTITY_MAX_INTEGER_DIGITS} integer digits rated_usage.cumulative"
            f" (Decimal(38, {QUANTITY_SCALE})) holds",
        )
    line = event.meter
    writes: list[tuple[str, Any]] = [(key, [format(after, "f"), offset])]
    if event.meter in plan.prices:
        amount = delta(plan.prices[event.meter], before, after)
    elif event.meter in plan.telecom_meters:
        amount, line = _rate_telecom(plan, state, event, period, writes)
    else:
        raise RatingError("meter", f"plan {plan.id!r} does not price meter {event.meter!r}")
    if not -AMOUNT_MAX <= amount <= AMOUNT_MAX:
        raise RatingError(
            "amount",
            f"{format(amount, 'f')} {plan.currency} has more than the {AMOUNT_MAX_INTEGER_DIGITS} integer digits"
            f" rated_usage.amount (Decimal(38, {AMOUNT_SCALE})) holds",
        )
    record: RatedUsage = {
        "tenant": event.tenant,
        "id": event.id,
        "customer": event.customer,
        "subject": event.subject or "",
        "meter": event.meter,
        "time": time,
        "period": period,
        "quantity": format(event.quantity, "f"),
        "amount": format(amount, "f"),
        "cumulative": format(after, "f"),
        "currency": plan.currency,
        "plan": plan.id,
        "line": line,
        "dimensions": dict(event.dimensions),
        "source": event.source or "",
        "src_partition": partition,
        "src_offset": offset,
    }
    return record, writes


BUNDLE_PREFIX = "b|"


def bundle_key(tenant: str, customer: str, period: str) -> str:
    return f"{BUNDLE_PREFIX}{tenant}\x1f{customer}\x1f{period}"


def _rate_telecom(
    plan: Plan, state: MutableMapping[str, Any], event: UsageEvent, period: str, writes: list[tuple[str, Any]]
) -> tuple[Decimal, str]:
    """CDR rating (destination, time band, increments, bundles); bundle use is per customer and period."""
    key = bundle_key(event.tenant, event.customer, period)
    current = state.get(key)
    used = {k: Decimal(v) for k, v in current[0].items()} if current is not None else {}
    try:
        rated = rate_cdr(
            plan.telecom,
            meter=event.meter,
            quantity=event.quantity,
            start=event.time,
            dimensions=event.dimensions,
            bundle_used=used,
        )
    except NoRate as exc:
        raise RatingError(exc.field, f"{exc.reason}: {exc.detail}" if exc.field == "quantity" else exc.reason) from None
    if rated.bundle_units_used:
        for bundle, units in rated.bundle_units_used.items():
            used[bundle] = _ADD(used[bundle], units) if bundle in used else units
        offset = writes[0][1][-1]
        writes.append((key, [{k: format(v, "f") for k, v in used.items()}, offset]))
    return rated.cost, rated.line_key
