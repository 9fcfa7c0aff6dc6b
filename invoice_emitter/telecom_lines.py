"""Invoice lines of a telecom plan: every call, SMS and data record re-rated at close, grouped by line.

Re-rating at close uses the same engine as the stream (`rating.telecom.rate_cdr`) and consumes bundles
in arrival order, the order the stream used, so the invoice reconciles with the real-time amounts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from meterstream.aggregation.usage_query import UsageRecord
from meterstream.invoice_emitter.document import decimal_text
from meterstream.rating.catalog import Plan


def telecom_lines(plan: Plan, records: Iterable[UsageRecord]) -> tuple[list[dict[str, Any]], Decimal, Decimal]:
    """(lines by meter/destination group/time band, re-rated total, streamed total) for one customer."""
    from meterstream.rating import round_money
    from meterstream.rating.money import EXACT
    from meterstream.rating.telecom import rate_cdr

    used: dict[str, Decimal] = defaultdict(Decimal)
    quantity: dict[str, Decimal] = defaultdict(Decimal)
    amount: dict[str, Decimal] = defaultdict(Decimal)
    events: dict[str, int] = defaultdict(int)
    bundle_units: dict[str, Decimal] = defaultdict(Decimal)
    rerated = streamed = Decimal(0)
    add = EXACT.add  # sums in the one explicit context (the default one keeps only 28 digits)
    for r in records:
        rated = rate_cdr(
            plan.telecom, meter=r.meter, quantity=r.quantity, start=r.time, dimensions=r.dimensions, bundle_used=used
        )
        for bundle, units in rated.bundle_units_used.items():
            used[bundle] = add(used[bundle], units)
        for seg in rated.segments:
            key = f"{r.meter}/{seg.destination_group}/{seg.band}"
            quantity[key] = add(quantity[key], seg.usage)
            if seg.bundle_id:
                bundle_units[key] = add(bundle_units[key], seg.billed)
        for key, value in rated.lines:
            amount[key] = add(amount[key], value)
        events[rated.line_key] += 1
        rerated = add(rerated, rated.cost)
        streamed = add(streamed, r.streamed_amount)
    lines = []
    for key in sorted(set(amount) | set(quantity)):
        meter, group, band = key.split("/", 2)
        lines.append(
            {
                "meter": meter,
                "description": f"{meter.replace('_', ' ')}: {group}, {band}",
                "line_key": key,
                "quantity": decimal_text(quantity[key]),
                "events": events.get(key, 0),
                "bundle_units": format(bundle_units[key], "f"),
                "precise_amount": format(amount[key], "f"),
                "amount": format(round_money(amount[key], plan.currency), "f"),
            }
        )
    return lines, rerated, streamed
