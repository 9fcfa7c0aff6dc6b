"""What the monthly finance figures read from the store: the facts of a tenant's issued invoices
(entities/invoice_figures.py computes the figures from them) and its monthly recurring revenue from subscriptions
(billing/revenue_metrics.py), for the own API's `/v1/analytics/...` and Lago's `/analytics/...` (docs/analytics.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from meterstream.entities.credit_notes import CreditNoteRow
from meterstream.entities.invoice_figures import (
    InvoiceFacts,
    add_months,
    gross_revenue,
    invoice_collection,
    invoiced_usage,
    month_window,
    overdue_balance,
)
from meterstream.entities.invoice_rules import ISSUED, to_minor
from meterstream.entities.invoices import InvoiceRow
from meterstream.entities.plans import find_plan_row, plan_doc
from meterstream.entities.subscriptions import list_subscriptions
from meterstream.rating.money import ROUNDING, minor_units, round_money
from meterstream.schemas import invoice as invoice_schema

USAGE_KINDS = ("usage", "adjustment")  # lines of metered usage (an adjustment: late usage of an earlier period)


def load_facts(sf: sessionmaker, tenant: str, customer: str | None = None, usage: bool = False) -> list[InvoiceFacts]:
    """The tenant's issued invoices (of one customer when given) as `InvoiceFacts`, with what their credit notes
    refund; with `usage`, each usage line's amount less its discounts, read from the invoice's document."""
    stmt = select(InvoiceRow).where(InvoiceRow.tenant == tenant, InvoiceRow.status.in_(ISSUED))
    refunds = (
        select(CreditNoteRow.invoice_id, func.sum(CreditNoteRow.refund_minor))
        .where(CreditNoteRow.tenant == tenant)
        .group_by(CreditNoteRow.invoice_id)
    )
    if customer is not None:
        stmt = stmt.where(InvoiceRow.customer == customer)
        refunds = refunds.where(CreditNoteRow.customer == customer)
    with sf() as s:
        refunded = {invoice_id: int(total or 0) for invoice_id, total in s.execute(refunds)}
        rows = list(s.scalars(stmt.order_by(InvoiceRow.id)))
    return [
        InvoiceFacts(
            invoice_id=r.invoice_id,
            customer=r.customer,
            currency=r.currency,
            status=r.status,
            issue_date=r.issue_date,
            due_date=r.due_date,
            billed_minor=r.billed_minor,
            amount_due_minor=r.amount_due_minor,
            refunded_minor=refunded.get(r.invoice_id, 0),
            usage=_usage_lines(r.document, r.currency) if usage else (),
        )
        for r in rows
    ]


def _usage_lines(document: str, currency: str) -> tuple[tuple[str, int], ...]:
    """(meter, amount less discounts in minor units) of each usage line of a stored invoice document; none for
    a document that is not an invoice (an invoice the record alone describes)."""
    try:
        doc = invoice_schema.decode(document)
    except (msgspec.DecodeError, ValueError):  # not an invoice document: no lines to count
        return ()
    return tuple(
        (line.code, to_minor("lines.amount", line.amount - line.discount_amount, currency, allow_negative=True))
        for line in doc.lines
        if line.kind in USAGE_KINDS
    )


def plan_lookup(sf: sessionmaker, tenant: str) -> Callable[[str, int | None, datetime], Any]:
    """`plan(code, version, at)`: the plan version a subscription's phase names (None: the newest, for add-ons),
    read once per (code, version); deleted versions too (a phase that ended may name one). RuntimeError when
    none exists."""
    cache: dict[tuple[str, int | None], Any] = {}

    def plan(code: str, version: int | None, at: datetime) -> Any:
        if (code, version) not in cache:
            with sf() as s:
                row = find_plan_row(s, tenant, code, version, include_deleted=version is not None)
                if row is None:
                    raise RuntimeError(f"plan {code!r} (version {version or 'newest'}) not found")
                cache[(code, version)] = plan_doc(row)
        return cache[(code, version)]

    return plan


FIGURES = ("gross_revenue", "invoice_collection", "overdue_balance", "invoiced_usage", "mrr")


@dataclass(frozen=True)
class MonthMrr:
    month: date
    currency: str
    amount_minor: int  # the month-end MRR rounded once to the minor unit (half away from zero)


def figure(sf: sessionmaker, tenant: str, name: str, today: date, months: int | None = None,
           currency: str | None = None, customer: str | None = None) -> list[Any]:  # fmt: skip
    """The rows of figure `name` (one of FIGURES) for the tenant (one customer when given) in the window of `months`
    up to `today`'s month (entities/invoice_figures.month_window), of one currency when given."""
    if name == "mrr":
        first, last = month_window(today, months)
        rows = []
        for month, totals in monthly_mrr(sf, tenant, first, last, customer).items():
            for code, value in sorted(totals.items()):
                if currency is None or code == currency:
                    minor = int(round_money(value, code).scaleb(minor_units(code)))
                    rows.append(MonthMrr(month, code, minor))
        return rows
    compute = {"gross_revenue": gross_revenue, "invoice_collection": invoice_collection,
               "overdue_balance": overdue_balance, "invoiced_usage": invoiced_usage}[name]  # fmt: skip
    facts = load_facts(sf, tenant, customer, usage=name == "invoiced_usage")
    return compute(facts, today, months, currency)


def monthly_mrr(
    sf: sessionmaker, tenant: str, first: date | None, last: date, customer: str | None = None
) -> dict[date, dict[str, Decimal]]:
    """{month: {currency: MRR}} for each month from `first` (None: the month the tenant's first subscription
    starts; nothing without subscriptions) to `last` (first days of months), of one customer's subscriptions when
    given: the MRR in effect at the month's end, i.e. at the first instant (UTC) of the next month
    (billing/revenue_metrics.py; exact, not rounded)."""
    from meterstream.billing.revenue_metrics import mrr_by_customer

    subs = list_subscriptions(sf, tenant, customer)
    if first is None:
        starts = [phase.start for sub in subs for phase in sub.phases]
        if not starts:
            return {}
        first = min(starts).astimezone(UTC).date().replace(day=1)
    plan = plan_lookup(sf, tenant)
    out: dict[date, dict[str, Decimal]] = {}
    month = first
    while month <= last:
        end = add_months(month, 1)
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for (_, currency), value in mrr_by_customer(subs, datetime(end.year, end.month, 1, tzinfo=UTC), plan).items():
            totals[currency] = ROUNDING.add(totals[currency], value)
        out[month] = dict(totals)
        month = end
    return out


__all__ = ["FIGURES", "USAGE_KINDS", "MonthMrr", "figure", "load_facts", "monthly_mrr", "plan_lookup"]
