"""Monthly finance figures from issued invoices: gross revenue, collections by payment status, overdue balances
and invoiced usage per meter. Pure; money in integer minor units of each invoice's currency, never float.

What each figure counts (docs/analytics.md, "Monthly finance figures"; the Lago analytics endpoints serve them):
- **gross revenue**: issued invoices (finalized, partially paid, paid or overdue; not drafts, not voided) by the
  month of their issue date and currency: what they ask for (`billed_minor`: the total after prepaid credits)
  less what their credit notes refund, and how many invoices;
- **invoice collection**: the same invoices by issue month, currency and payment status: `succeeded` once paid
  in full, `pending` otherwise (Meterstream records no failed payment), their count and what they ask for;
- **overdue balance**: overdue invoices by the month of their due date and currency: what is still due on them
  (after payments and credit notes), and their ids;
- **invoiced usage**: the usage lines of issued invoices by issue month, meter and currency: each line's amount
  less its share of the invoice's discounts (before tax), as the invoice rounded them.

A window of months (`month_window`) keeps the months from `months - 1` before the current one to the current one
(`months` 1 or less: the current month only), as Lago's `months` parameter does; without it every month up to the
current one. Rows come in month order (invoiced usage: newest month first, then the largest amount, as Lago).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from meterstream.entities.invoice_rules import ISSUED, OVERDUE, PAID


@dataclass(frozen=True)
class InvoiceFacts:
    """What the figures read of one invoice (entities/figures.py loads them)."""

    invoice_id: str
    customer: str
    currency: str
    status: str  # the store's status (entities/invoice_rules.STATUSES)
    issue_date: date
    due_date: date
    billed_minor: int  # what the invoice asks for: its total after prepaid credits
    amount_due_minor: int  # still due after payments and credit notes
    refunded_minor: int = 0  # what its credit notes owe back
    usage: tuple[tuple[str, int], ...] = ()  # (meter, amount less discounts) of each usage line


@dataclass(frozen=True)
class MonthAmount:
    month: date  # the month's first day
    currency: str
    amount_minor: int
    invoices: int


@dataclass(frozen=True)
class Collection:
    month: date
    currency: str | None  # None: a month without issued invoices
    payment_status: str | None  # succeeded | pending; None with currency None
    amount_minor: int
    invoices: int


@dataclass(frozen=True)
class Overdue:
    month: date  # of the due dates
    currency: str
    amount_minor: int
    invoice_ids: tuple[str, ...]


@dataclass(frozen=True)
class UsageAmount:
    month: date
    meter: str
    currency: str
    amount_minor: int


def first_of_month(day: date) -> date:
    return day.replace(day=1)


def add_months(month: date, n: int) -> date:
    """The first day of the month `n` months after `month`'s (n may be negative)."""
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def month_window(today: date, months: int | None) -> tuple[date | None, date]:
    """(first month kept or None for no bound, the current month) for Lago's `months` parameter."""
    current = first_of_month(today)
    if months is None:
        return None, current
    return add_months(current, -(max(months, 1) - 1)), current


def _kept(month: date, window: tuple[date | None, date]) -> bool:
    first, last = window
    return (first is None or month >= first) and month <= last


def _issued(facts: Iterable[InvoiceFacts], currency: str | None) -> list[InvoiceFacts]:
    return [f for f in facts if f.status in ISSUED and (currency is None or f.currency == currency)]


def gross_revenue(facts: Iterable[InvoiceFacts], today: date, months: int | None = None,
                  currency: str | None = None) -> list[MonthAmount]:  # fmt: skip
    window = month_window(today, months)
    sums: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    for f in _issued(facts, currency):
        month = first_of_month(f.issue_date)
        if _kept(month, window):
            entry = sums[(month, f.currency)]
            entry[0] += f.billed_minor - f.refunded_minor
            entry[1] += 1
    return [MonthAmount(m, c, amount, n) for (m, c), (amount, n) in sorted(sums.items())]


def invoice_collection(facts: Iterable[InvoiceFacts], today: date, months: int | None = None,
                       currency: str | None = None) -> list[Collection]:  # fmt: skip
    """Every month of the window has rows: one per currency and payment status with invoices, or, without a
    currency asked for, one empty row (currency and status None, 0 invoices) when it has none, as Lago. Without
    `months` the window starts at the first issue month."""
    issued = _issued(facts, currency)
    window = month_window(today, months)
    sums: dict[tuple[date, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for f in issued:
        month = first_of_month(f.issue_date)
        if _kept(month, window):
            entry = sums[(month, f.currency, "succeeded" if f.status == PAID else "pending")]
            entry[0] += f.billed_minor
            entry[1] += 1
    first, last = window
    if first is None:
        first = min((first_of_month(f.issue_date) for f in issued), default=last)
    rows = [Collection(m, c, s, amount, n) for (m, c, s), (amount, n) in sorted(sums.items())]
    if currency is None:
        have = {r.month for r in rows}
        month = first
        while month <= last:
            if month not in have:
                rows.append(Collection(month, None, None, 0, 0))
            month = add_months(month, 1)
        rows.sort(key=lambda r: (r.month, r.payment_status or "", r.currency or ""))
    return rows


def overdue_balance(facts: Iterable[InvoiceFacts], today: date, months: int | None = None,
                    currency: str | None = None) -> list[Overdue]:  # fmt: skip
    window = month_window(today, months)
    sums: dict[tuple[date, str], tuple[int, list[str]]] = {}
    for f in facts:
        if f.status != OVERDUE or (currency is not None and f.currency != currency):
            continue
        month = first_of_month(f.due_date)
        if _kept(month, window):
            amount, ids = sums.get((month, f.currency), (0, []))
            sums[(month, f.currency)] = (amount + f.amount_due_minor, [*ids, f.invoice_id])
    return [Overdue(m, c, amount, tuple(sorted(ids))) for (m, c), (amount, ids) in sorted(sums.items())]


def invoiced_usage(facts: Iterable[InvoiceFacts], today: date, months: int | None = None,
                   currency: str | None = None) -> list[UsageAmount]:  # fmt: skip
    window = month_window(today, months)
    sums: dict[tuple[date, str, str], int] = defaultdict(int)
    for f in _issued(facts, currency):
        month = first_of_month(f.issue_date)
        if _kept(month, window):
            for meter, amount in f.usage:
                sums[(month, meter, f.currency)] += amount
    rows = [UsageAmount(m, meter, c, amount) for (m, meter, c), amount in sums.items()]
    rows.sort(key=lambda r: (-r.month.toordinal(), -r.amount_minor, r.meter, r.currency))
    return rows


__all__ = [
    "Collection",
    "InvoiceFacts",
    "MonthAmount",
    "Overdue",
    "UsageAmount",
    "add_months",
    "gross_revenue",
    "invoice_collection",
    "invoiced_usage",
    "month_window",
    "overdue_balance",
]
