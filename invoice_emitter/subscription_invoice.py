"""Invoices of customers with subscriptions in the entity store (issue #14; rules in docs/billing.md, "The close").

Which periods a close covers: the close of label `YYYY-MM` closes every billing period of a subscription
whose END falls in (local start of that month, local start of the next month], local = the customer's
billing time zone. A calendar monthly period is closed by its own month's close, an anniversary period by
the close of the month it ends in, a weekly subscription has four or five periods on one close.

What a period's lines are, per subscription:
- usage: the customer's deduplicated usage by event TIME within each phase's part of the period (not by the
  plan the stream recorded: a back-dated change reprices), priced with that phase's plan version (its
  per-customer usage overrides included; add-ons for the meters they price) through the one pricing
  specification (`document.MeterPricer`, `rating.quote`); telecom meters re-rated in arrival order
  (`telecom_lines`). Tiers, free units and minimums of a usage price count per phase part: an upgrade on
  the 15th starts the new plan's tiers from zero (Lago's rule: the old plan's usage is settled at the
  change). Each line carries the [start, end) it covers;
- everything else from `billing.SubscriptionCharges.lines(period, usage_total)` (recurring fees in advance or
  arrears, prorated; one-time; installments; the minimum true-up over this subscription's usage lines).

Which subscription a usage row belongs to: at its time, the first of the customer's subscriptions (by
external id) whose phase in effect prices its meter (main plan, then add-ons) — the live catalog's rule. Rows
the stream rated with a plan of the catalog FILE (`file_plans`) are billed by the file path, never here.
Usage in a closed period that no phase prices is an error naming the meter and the time (the customer fails
alone). Line keys start with `@` (`LINE_KEY_PREFIX`), so the ledger tells them from the file path's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from meterstream.aggregation.usage_query import MeterUsage, records_between, usage_by_piece
from meterstream.billing.charges import SubscriptionCharges
from meterstream.billing.periods import Period, Schedule, label_window
from meterstream.invoice_emitter.document import MeterPricer, empty_invoice, invoice_and_differences, with_lines
from meterstream.invoice_emitter.store_plans import StoreView
from meterstream.invoice_emitter.telecom_lines import telecom_lines
from meterstream.rating.catalog import Plan
from meterstream.rating.money import EXACT
from meterstream.schemas.entities import SubscriptionDoc

__all__ = [
    "LINE_KEY_PREFIX",
    "CustomerBill",
    "close_label_of",
    "customer_bill",
    "draft_usage",
    "periods_closed_by",
    "subscription_document",
]

LINE_KEY_PREFIX = "@"
_TICK = timedelta(microseconds=1)
_ZERO = Decimal(0)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def close_label_of(period: Period, timezone: str) -> str:
    """The label of the close that closes `period`: the local month of its last instant."""
    clock = Schedule("monthly", "calendar", timezone, period.first_day)
    last = clock.local_day(period.end - _TICK)
    return f"{last.year:04d}-{last.month:02d}"


def _live(sub: SubscriptionDoc, period: Period) -> bool:
    """Does any (non-empty) phase of `sub` overlap `period`?"""
    return any(
        (p.end is None or p.end > p.start) and p.start < period.end and (p.end is None or p.end > period.start)
        for p in sub.phases
    )


def periods_closed_by(charges: SubscriptionCharges, label: str, timezone: str) -> list[Period]:
    """The subscription's billing periods the close of `label` closes (END in the label's local month) during
    which the subscription was in effect."""
    lo, hi = label_window(label, timezone)
    return [p for p in charges.periods_between(lo, hi) if lo < p.end <= hi and _live(charges.sub, p)]


@dataclass
class CustomerBill:
    """One customer's subscription lines for one close: in document order, with the periods they close."""

    tenant: str
    customer: str
    currency: str
    plan: str  # the rating id shown on the document: the main plan at the end of the newest period
    lines: list[dict[str, Any]] = field(default_factory=list)
    periods: list[tuple[str, Period]] = field(default_factory=list)  # (subscription, period)
    unreconciled: list[str] = field(default_factory=list)

    @property
    def until(self) -> datetime | None:
        """The end of the newest period closed (the customer is invoiced up to it)."""
        return max((p.end for _, p in self.periods), default=None)


@dataclass(frozen=True)
class _Segment:
    """One phase's part of one closed period of one subscription, with the plans that price its usage."""

    sub: str
    period: Period
    start: datetime
    end: datetime
    plans: tuple[Plan, ...]  # main plan (with the customer's usage overrides), then its add-ons


def _phase_plans(store: StoreView, charges: SubscriptionCharges) -> list[tuple[datetime, datetime | None, tuple]]:
    """(start, end, plans) of each non-empty phase of the subscription, plans as the pricing engine's."""
    out = []
    for phase in charges.phases:
        plans = (store.rating_plan(phase.plan, phase.phase.usage_overrides),
                 *(store.rating_plan(a) for a in phase.addons))  # fmt: skip
        out.append((phase.phase.start, phase.phase.end, plans))
    return out


def customer_bill(
    client: Client,
    db: str,
    store: StoreView,
    tenant: str,
    customer: str,
    subs: list[SubscriptionDoc],
    label: str | None,
    file_plans: Iterable[str] = (),
    pricer: MeterPricer | None = None,
    only: tuple[str, datetime] | None = None,
    fees: bool = True,
) -> CustomerBill | None:
    """The subscription lines of one customer for the close of `label` (None when it closes no period of
    theirs). With `only=(subscription, at)` instead: that subscription's period containing `at` alone.
    With `fees=False`, usage lines only (a tenant's default subscription billed to a customer without one of
    its own: its recurring, one-time, installment and minimum charges are not theirs; docs/billing.md).

    ValueError (naming the subscription and field) when the customer cannot be billed: a plan version that
    cannot be resolved, subscriptions in two currencies, usage no phase prices."""
    pricer = pricer or MeterPricer(limit=0)
    skip = sorted(set(file_plans))
    tz = store.timezone(tenant, customer)
    lookup = store.lookup(tenant)
    subs = sorted(subs, key=lambda d: d.external_id)
    charges: dict[str, SubscriptionCharges] = {}
    phases: dict[str, list[tuple[datetime, datetime | None, tuple]]] = {}
    for sub in subs:
        try:
            charges[sub.external_id] = SubscriptionCharges(sub, lookup, tz)
            phases[sub.external_id] = _phase_plans(store, charges[sub.external_id])
        except ValueError as exc:
            raise ValueError(f"subscription {sub.external_id}: {exc}") from None
    currencies = {c.currency for c in charges.values()}
    if len(currencies) > 1:
        raise ValueError(f"subscriptions: customer {customer} has subscriptions in {sorted(currencies)}; an invoice "
                         f"has one currency")  # fmt: skip
    wanted: dict[str, list[Period]] = {}
    for sub in subs:
        c = charges[sub.external_id]
        if only is not None:
            if sub.external_id == only[0]:
                wanted[sub.external_id] = [c.period_containing(only[1])]
        elif label is not None:
            found = periods_closed_by(c, label, tz)
            if found:
                wanted[sub.external_id] = found
    if not wanted:
        return None

    segments: list[_Segment] = []
    for sub_id, periods in wanted.items():
        for period in sorted(periods, key=lambda p: p.start):
            for start, end, plans in phases[sub_id]:
                lo, hi = max(start, period.start), period.end if end is None else min(end, period.end)
                if lo < hi:
                    segments.append(_Segment(sub_id, period, lo, hi, plans))
    closing = [p for ps in wanted.values() for p in ps]
    lo_all, hi_all = min(p.start for p in closing), max(p.end for p in closing)
    edges = {b for ps in phases.values() for st, en, _ in ps for b in (st, en) if b is not None}
    edges |= {p.start for p in closing} | {p.end for p in closing}
    bounds = sorted(b for b in edges if lo_all <= b <= hi_all)

    def winner(meter: str, at: datetime) -> tuple[str, Plan] | None:
        for sub in subs:
            for start, end, plans in phases[sub.external_id]:
                if start <= at and (end is None or at < end):
                    for plan in plans:
                        if plan.rates(meter):
                            return sub.external_id, plan
        return None

    # (segment index, plan id, meter) -> [quantity, events, streamed]
    totals: dict[tuple[int, str, str], list[Any]] = {}
    telecom_pieces: dict[tuple[int, str, str], list[tuple[datetime, datetime]]] = defaultdict(list)
    for row in usage_by_piece(client, db, tenant, customer, bounds, skip):
        a, b = bounds[row.piece - 1], bounds[row.piece]
        if not any(p.start <= a < p.end for p in closing):
            continue  # between two closed periods: another close bills it
        won = winner(row.meter, a)
        if won is None:
            raise ValueError(
                f"usage: {row.quantity.normalize():f} of meter {row.meter} between {_iso(a)} and {_iso(b)} (rated "
                f"with plan {row.plan}) is priced by no subscription phase of customer {tenant}/{customer} in "
                f"effect then; not invoiced"
            )
        sub_id, plan = won
        seg = next((i for i, s in enumerate(segments) if s.sub == sub_id and s.start <= a < s.end), None)
        if seg is None:
            continue  # the winning subscription's period containing it is closed by another close
        if row.meter in plan.telecom_meters:
            telecom_pieces[(seg, plan.id, row.meter)].append((a, b))
            continue
        slot = totals.setdefault((seg, plan.id, row.meter), [_ZERO, 0, _ZERO])
        slot[0] = EXACT.add(slot[0], row.quantity)
        slot[1] += row.events
        slot[2] = EXACT.add(slot[2], row.streamed_amount)

    currency = currencies.pop()
    bill = CustomerBill(tenant, customer, currency, "")
    keys: dict[str, int] = {}

    def keyed(line: dict[str, Any], key: str) -> dict[str, Any]:
        n = keys.get(key, 0)
        keys[key] = n + 1
        line["line_key"] = LINE_KEY_PREFIX + (key if n == 0 else f"{key}#{n + 1}")
        return line

    for sub_id in sorted(wanted):
        for period in sorted(wanted[sub_id], key=lambda p: p.start):
            bill.periods.append((sub_id, period))
            usage_total = _ZERO
            for index, seg in enumerate(segments):
                if seg.sub != sub_id or seg.period != period:
                    continue
                where = {"subscription": sub_id, "start": _iso(seg.start), "end": _iso(seg.end)}
                for plan in seg.plans:
                    base = f"{sub_id}/{_iso(seg.start)}/{plan.id}"
                    usage = [
                        MeterUsage(tenant, customer, plan.id, currency, meter, q, n, streamed)
                        for (i, pid, meter), (q, n, streamed) in sorted(totals.items()) if i == index and pid == plan.id
                    ]  # fmt: skip
                    if plan.prices:
                        doc, differ = invoice_and_differences(tenant, customer, label or "", plan, usage, None, pricer)
                        for line in doc["lines"]:
                            body = {k: v for k, v in line.items() if k != "line_no"}
                            bill.lines.append(keyed({"kind": "usage", "plan": plan.id, **where, **body},
                                                    f"{base}/{line['meter']}"))  # fmt: skip
                            usage_total = EXACT.add(usage_total, Decimal(line["amount"]))
                        bill.unreconciled += [f"{tenant}/{customer}/{sub_id}/{m}@{_iso(seg.start)}" for m in differ]
                    meters = sorted(m for (i, pid, m) in telecom_pieces if i == index and pid == plan.id)
                    if meters:
                        pieces = [ab for (i, pid, _m), v in telecom_pieces.items() if i == index and pid == plan.id
                                  for ab in v]  # fmt: skip
                        records = [
                            r
                            for r in records_between(client, db, tenant, customer, seg.start, seg.end, meters, skip)
                            if any(a <= r.time < b for a, b in pieces)
                        ]
                        lines, rerated, streamed = telecom_lines(plan, records)
                        if rerated != streamed:
                            bill.unreconciled.append(f"{tenant}/{customer}/{sub_id}/telecom@{_iso(seg.start)}")
                        for line in lines:
                            key = f"{base}/{line['line_key']}"
                            bill.lines.append(keyed({"kind": "usage", "plan": plan.id, **where, **line}, key))
                            usage_total = EXACT.add(usage_total, Decimal(line["amount"]))
            for charge in charges[sub_id].lines(period, usage_total) if fees else ():
                line = charge.to_json()
                line = {"kind": line.pop("kind"), "plan": line.pop("plan"), "subscription": sub_id, "meter": "",
                        **line}  # fmt: skip
                bill.lines.append(keyed(line, f"{sub_id}/{line['start']}/{line['kind']}/{line['code']}/{line['plan']}"))
    first = sorted(wanted)[0]
    newest = max(wanted[first], key=lambda p: p.start)
    at = newest.end - _TICK
    phase = charges[first].sub.phase_at(at) or next(
        (p for p in reversed(charges[first].sub.phases) if p.start < newest.end), charges[first].sub.phases[0]
    )
    bill.plan = f"{phase.plan_code}@{phase.plan_version}"
    return bill


def subscription_document(bill: CustomerBill, label: str) -> dict[str, Any]:
    """The invoice document of a customer's subscription lines: the close's document shape (tenant, customer,
    period = the close label, plan, currency, numbered lines, subtotal, total), plus `period_start` /
    `period_end` (the earliest start and latest end of the billing periods it closes), `timezone` and
    `billing_periods` ({subscription, start, end} each)."""
    doc = with_lines(empty_invoice(bill.tenant, bill.customer, label, bill.plan, bill.currency), bill.lines)
    return with_periods(doc, bill)


def with_periods(doc: dict[str, Any], bill: CustomerBill) -> dict[str, Any]:
    """`doc` with the billing periods of `bill` named (the fields `subscription_document` adds)."""
    return {
        **doc,
        "period_start": _iso(min(p.start for _, p in bill.periods)),
        "period_end": _iso(max(p.end for _, p in bill.periods)),
        "billing_periods": [{"subscription": s, "start": _iso(p.start), "end": _iso(p.end)} for s, p in bill.periods],
    }


def draft_usage(
    client: Client,
    db: str,
    sf: Any,
    tenant: str,
    subscription_external_id: str,
    at: datetime,
    file_plans: Iterable[str] = (),
) -> dict[str, Any]:
    """The invoice document the close would write for the subscription's billing period containing `at`, from
    the usage in ClickHouse now (a draft: `status` is `draft`; the document's `period` is the label of the
    close that will close it). Lines of that subscription only. `file_plans`: plan ids of the catalog file
    (rows the stream rated with them are billed by the file path, not here). Raises the store's NotFound for
    an unknown subscription, ValueError when it cannot be billed."""
    from meterstream.entities.subscriptions import get_subscription

    store = StoreView(sf)
    sub = get_subscription(sf, tenant, subscription_external_id)
    subs = store.customer_subscriptions(tenant, sub.customer)
    if all(s.external_id != sub.external_id for s in subs):
        subs.append(sub)
    bill = customer_bill(client, db, store, tenant, sub.customer, subs, None, file_plans,
                         only=(sub.external_id, at))  # fmt: skip
    assert bill is not None
    label = close_label_of(bill.periods[0][1], store.timezone(tenant, sub.customer))
    return {**subscription_document(bill, label), "status": "draft"}
