"""What the invoices must say, computed from the generated input alone (no Kafka, no ClickHouse).

The generator's accepted events, in the order they were produced (which is each customer's arrival
order: one key, one partition), go through the same document code as period close; so a difference
with the real invoices can only come from the data path: lost, duplicated or misrouted events.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from meterstream.aggregation.usage_query import MeterUsage, UsageRecord
from meterstream.invoice_emitter.adjustments import adjustment_lines
from meterstream.invoice_emitter.document import build_invoice
from meterstream.invoice_emitter.telecom_lines import telecom_lines
from meterstream.rating.catalog import Catalog


def expected_invoices(catalog: Catalog, period: str, events: list[dict[str, Any]]) -> dict[tuple[str, str], dict]:
    """Invoice documents for `period` from accepted events (dicts with tenant, customer, meter, ...)."""
    quantities: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    records: dict[tuple[str, str], list[UsageRecord]] = defaultdict(list)
    for e in events:
        if e["period"] != period:
            continue
        key = (e["tenant"], e["customer"], e["meter"])
        quantities[key] += Decimal(e["quantity"])
        counts[key] += 1
        records[key[:2]].append(UsageRecord(
            e["tenant"], e["customer"], e["meter"], Decimal(e["quantity"]),
            datetime.fromisoformat(e["time"]), e.get("dimensions", {}), Decimal(0),
        ))  # fmt: skip
    usage: dict[tuple[str, str], list[MeterUsage]] = defaultdict(list)
    for (t, c, m), q in quantities.items():
        plan = catalog.plan_for(t, c)
        assert plan is not None, f"generated an accepted event for {t}/{c} without a plan"
        usage[(t, c)].append(MeterUsage(t, c, plan.id, plan.currency, m, q, counts[(t, c, m)], Decimal(0)))
    docs = {}
    for (t, c), rows in sorted(usage.items()):
        plan = catalog.plan_for(t, c)
        extra = telecom_lines(plan, records[(t, c)])[0] if plan.telecom is not None else []
        docs[(t, c)] = build_invoice(t, c, period, plan, rows, extra)
    return docs


def expected_totals(
    catalog: Catalog, period: str, closed: str, before_close: list[dict], after_close: list[dict]
) -> dict[tuple[str, str], Decimal]:
    """Per customer: `period`'s invoice total, including adjustments for `closed` usage that came late."""
    current = expected_invoices(catalog, period, after_close)
    billed = expected_invoices(catalog, closed, before_close)
    now = expected_invoices(catalog, closed, before_close + after_close)
    totals = {key: Decimal(doc["total"]) for key, doc in current.items()}
    for key, doc in now.items():
        was = {
            line.get("line_key", line["meter"]): (line["meter"], Decimal(line["quantity"]), Decimal(line["amount"]))
            for line in billed[key]["lines"]
        } if key in billed else {}  # fmt: skip
        for line in adjustment_lines(doc["lines"], was, closed, doc["currency"]):
            totals[key] = totals.get(key, Decimal(0)) + Decimal(line["amount"])
    return totals
