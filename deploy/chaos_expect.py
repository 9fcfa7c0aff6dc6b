"""What the chaos run's invoices must total, computed from the generated input alone, independently of the close.

Nothing here comes from `invoice_emitter/` (the code under test) or from Kafka/ClickHouse: the accepted
events the generator kept (`ingest.workload.Truth.accepted_events`, in production order, which is each
customer's arrival order: one key, one partition) are priced straight through the pricing engine, by the
rules of docs/pricing.md and docs/telecom.md:

* a plan's priced meters: `rating.quote(price, period quantity).total` per meter (already rounded once to
  the currency's minor unit). Every meter the plan prices counts, used or not: a period minimum is due at
  quantity 0 (a line of 0 adds nothing).
* a plan's telecom meters: each record through `rating.telecom.rate_cdr` in arrival order, with the
  customer's bundle use of the period carried from record to record; the records' per-band amounts
  (`rated.lines`) are summed per `meter/destination group/band` and each of those sums is rounded once
  to the currency's minor unit (half away from zero).
* an invoice total is the sum of those rounded amounts; a customer has an invoice for a period when it
  has accepted usage in it.
* late usage: usage of the already closed period that arrives after its close is billed on this period's
  invoice as the difference between that period's total with and without it (so its tiers, minimums and
  bundles apply as if the usage had been on time).

So a pricing or bundle mistake in the close, a lost or duplicated event, or a misrouted one makes the
invoices differ from these totals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

from meterstream.rating import quote, round_money
from meterstream.rating.catalog import Catalog, Plan
from meterstream.rating.money import EXACT
from meterstream.rating.telecom import rate_cdr

ZERO = Decimal(0)
Customer = tuple[str, str]


def invoice_total(plan: Plan, events: Iterable[dict[str, Any]]) -> Decimal:
    """One customer's invoice total for one period: `events` are its accepted events of that period, in
    arrival order (dicts with meter, quantity, time and dimensions as generated)."""
    quantities: dict[str, Decimal] = defaultdict(Decimal)
    telecom: dict[str, Decimal] = defaultdict(Decimal)  # meter/group/band -> sum of the records' amounts
    bundle_used: dict[str, Decimal] = defaultdict(Decimal)
    for e in events:
        meter, quantity = e["meter"], Decimal(e["quantity"])
        if meter in plan.telecom_meters:
            # the rater keeps its own exactness rules (one division, one rounding per record): the stream
            # calls it in the default context too
            rated = rate_cdr(
                plan.telecom,
                meter=meter,
                quantity=quantity,
                start=datetime.fromisoformat(e["time"]),
                dimensions=e.get("dimensions") or {},
                bundle_used=bundle_used,
            )
            with localcontext(EXACT):
                for bundle, units in rated.bundle_units_used.items():
                    bundle_used[bundle] += units
                for key, amount in rated.lines:
                    telecom[key] += amount
        elif meter in plan.prices:
            with localcontext(EXACT):
                quantities[meter] += quantity
        else:
            raise ValueError(f"accepted event {e.get('id')!r}: plan {plan.id!r} does not rate meter {meter!r}")
    with localcontext(EXACT):  # sums of amounts with a fixed number of decimals: exact, or an error
        total = ZERO
        for meter, price in plan.prices.items():
            total += quote(price, quantities.get(meter, ZERO)).total
        for amount in telecom.values():
            total += round_money(amount, plan.currency)
    return total


def period_totals(catalog: Catalog, period: str, events: Iterable[dict[str, Any]]) -> dict[Customer, Decimal]:
    """Per customer with accepted usage in `period`: its invoice total for that period (no adjustments)."""
    by_customer: dict[Customer, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["period"] == period:
            by_customer[(e["tenant"], e["customer"])].append(e)
    totals = {}
    for (tenant, customer), rows in sorted(by_customer.items()):
        plan = catalog.plan_for(tenant, customer)
        if plan is None:
            raise ValueError(f"generated an accepted event for {tenant}/{customer}, who has no plan")
        totals[(tenant, customer)] = invoice_total(plan, rows)
    return totals


def expected_totals(
    catalog: Catalog, period: str, closed: str, before_close: list[dict], after_close: list[dict]
) -> dict[Customer, Decimal]:
    """Per customer: `period`'s invoice total, including what usage of `closed` arriving after `closed` was
    closed adds. `before_close` / `after_close`: the accepted events produced before / after that close."""
    everything = before_close + after_close  # production order = arrival order per customer
    totals = period_totals(catalog, period, everything)
    late = {(e["tenant"], e["customer"]) for e in after_close if e["period"] == closed}
    if late:
        billed = period_totals(catalog, closed, before_close)
        now = period_totals(catalog, closed, everything)
        with localcontext(EXACT):
            for key in sorted(late):
                totals[key] = totals.get(key, ZERO) + now[key] - billed.get(key, ZERO)
    return totals
