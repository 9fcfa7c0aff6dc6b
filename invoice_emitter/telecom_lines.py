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
    """(lines by meter/destination group/time band, re-rated total, streamed total) for one customer.

    A line's `quantity` is the real usage, `billed_units` the units its billing increments billed (`bundle_units`
    of them from bundles), `streamed_amount` what the stream rated for the records counted in its `events` (a
    record split across bands counts in the line where it starts)."""
    from meterstream.rating import round_money
    from meterstream.rating.money import EXACT
    from meterstream.rating.telecom import rate_cdr

    used: dict[str, Decimal] = defaultdict(Decimal)
    quantity: dict[str, Decimal] = defaultdict(Decimal)
    amount: dict[str, Decimal] = defaultdict(Decimal)
    events: dict[str, int] = defaultdict(int)
    bundle_units: dict[str, Decimal] = defaultdict(Decimal)
    billed_units: dict[str, Decimal] = defaultdict(Decimal)
    streamed_by_line: dict[str, Decimal] = defaultdict(Decimal)
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
            billed_units[key] = add(billed_units[key], seg.billed)
            if seg.bundle_id:
                bundle_units[key] = add(bundle_units[key], seg.billed)
        for key, value in rated.lines:
            amount[key] = add(amount[key], value)
        events[rated.line_key] += 1
        streamed_by_line[rated.line_key] = add(streamed_by_line[rated.line_key], r.streamed_amount)
        rerated = add(rerated, rated.cost)
        streamed = add(streamed, r.streamed_amount)
    lines = []
    for key in sorted(set(amount) | set(quantity)):
        meter, group, band = key.split("/", 2)
        precise = format(amount[key], "f")
        billed = decimal_text(billed_units[key])
        lines.append(
            {
                "meter": meter,
                "description": f"{meter.replace('_', ' ')}: {group}, {band}",
                "line_key": key,
                "quantity": decimal_text(quantity[key]),
                "events": events.get(key, 0),
                "bundle_units": decimal_text(bundle_units[key]),
                "billed_units": billed,
                "precise_amount": precise,
                "amount": format(round_money(amount[key], plan.currency), "f"),
                "streamed_amount": decimal_text(streamed_by_line[key]),
                # shown on the document as the line's pricing step (a version 2 line has no billed_units field)
                "breakdown": [
                    {"description": "billed units (after billing increments)", "kind": "billed_units",
                     "quantity": billed, "amount": precise}
                ],
            }
        )
    return lines, rerated, streamed
