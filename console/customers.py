"""Customers and their usage: the list with this period's running amount, and one customer's page with a daily
chart per meter (quantities) and per subject (amounts: each user's fair share of the customer's amount per meter and
billing period, computed by the query path with the close's rule, never a sum of per-event deltas), the period's
running amount per meter, and its invoices.

Reads go through the API's query path (`UsageQueries.usage`, `running_amount`: rated_usage FINAL, scoped by
tenant) and the entity store (`customers.list_customer_docs`, `invoice_lists.invoice_page`)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from meterstream.api.queries import ClickHouseUnavailable, UsageQuery
from meterstream.console.charts import Chart, daily_bars
from meterstream.console.web import User, current_period, page
from meterstream.entities import customers, invoice_lists
from meterstream.entities.common import NotFound
from meterstream.rating.money import EXACT, round_money

router = APIRouter()
MAX_CUSTOMERS = 1000
MAX_SUBJECT_CHARTS = 24  # a customer with hundreds of users: the largest by amount
RANGES = (7, 30, 90)  # days offered on a customer's page


def _money(amount: Decimal, currency: str) -> str:
    try:
        return f"{round_money(amount, currency)} {currency}"
    except (KeyError, ValueError):  # a currency without a known minor unit: shown exactly
        return f"{amount} {currency}"


def _month_start(today: date) -> datetime:
    return datetime.combine(today.replace(day=1), time(), UTC)


def customer_rows(docs: list[Any], usage: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per customer, from the store's customers and this period's usage (a customer of the catalog file
    has usage but no record): its name, running amount per currency, events."""
    names = {d.external_id: d.name for d in docs}
    amounts: dict[str, dict[str, Decimal]] = defaultdict(dict)
    events: dict[str, int] = defaultdict(int)
    for r in usage:
        per = amounts[r["customer"]]
        per[r["currency"]] = EXACT.add(per.get(r["currency"], Decimal(0)), Decimal(r["amount"]))
        events[r["customer"]] += r["events"]
    ids = sorted(set(names) | set(amounts))
    return [{"id": c, "name": names.get(c, ""), "events": events.get(c, 0),
             "amounts": [_money(a, cur) for cur, a in sorted(amounts.get(c, {}).items())]} for c in ids]  # fmt: skip


@router.get("/customers")
async def customer_list(request: Request, user: User) -> Response:
    state = request.app.state
    docs = await run_in_threadpool(customers.list_customer_docs, state.sessions, user.tenant, MAX_CUSTOMERS, 0)
    today = datetime.now(UTC).date()
    error = None
    try:
        usage = await run_in_threadpool(state.queries.usage, UsageQuery(
            tenant=user.tenant, group_by=("customer",), start=_month_start(today)))  # fmt: skip
    except ClickHouseUnavailable as exc:
        usage, error = [], f"usage is not available: {exc}"
    return page(request, "customers.html", user, rows=customer_rows(docs, usage), period=current_period(),
                error=error)  # fmt: skip


def usage_charts(
    rows: list[dict[str, Any]], first: date, last: date, max_subjects: int = MAX_SUBJECT_CHARTS
) -> tuple[list[Chart], list[Chart], int]:
    """Daily charts from usage rows grouped by subject and meter per day: per meter the quantity, per subject and
    currency the amount (a subject's meters add up in money, not in units; the rows' amounts are already fair shares,
    `api.queries.fair_amounts`): the `max_subjects` largest by amount
    (then by name), and how many subjects were left out."""
    per_meter: dict[str, dict[date, Decimal]] = defaultdict(dict)
    per_subject: dict[tuple[str, str], dict[date, Decimal]] = defaultdict(dict)
    for r in rows:
        day = date.fromisoformat(r["window_start"][:10])
        m = per_meter[r["meter"]]
        m[day] = EXACT.add(m.get(day, Decimal(0)), Decimal(r["quantity"]))
        s = per_subject[(r["subject"], r["currency"])]
        s[day] = EXACT.add(s.get(day, Decimal(0)), Decimal(r["amount"]))
    meters = [daily_bars(meter, "", values, first, last) for meter, values in sorted(per_meter.items())]
    subjects = [daily_bars(subject or "(no subject)", currency, values, first, last)
                for (subject, currency), values in sorted(per_subject.items())]  # fmt: skip
    subjects.sort(key=lambda c: -Decimal(c.total))  # stable: equal totals keep the name order
    return meters, subjects[:max_subjects], max(len(subjects) - max_subjects, 0)


def _doc(sessions: Any, tenant: str, customer: str) -> Any:
    try:
        return customers.get_customer_doc(sessions, tenant, customer)
    except NotFound:
        return None


@router.get("/customers/{customer:path}")
async def customer_page(
    request: Request, user: User, customer: str, days: Annotated[int, Query(ge=1, le=366)] = 30
) -> Response:
    state = request.app.state
    last = datetime.now(UTC).date()
    first = last - timedelta(days=days - 1)
    doc = await run_in_threadpool(_doc, state.sessions, user.tenant, customer)
    invoices = await run_in_threadpool(lambda: invoice_lists.invoice_page(
        state.sessions, user.tenant, customer=customer, limit=100).items)  # fmt: skip
    meters: list[Chart] = []
    subjects: list[Chart] = []
    more = 0
    running = None
    error = None
    try:
        rows = await run_in_threadpool(
            state.queries.usage,
            UsageQuery(
                tenant=user.tenant,
                group_by=("subject", "meter"),
                window="day",
                customer=customer,
                start=datetime.combine(first, time(), UTC),
                end=datetime.combine(last + timedelta(days=1), time(), UTC),
            ),
        )
        meters, subjects, more = usage_charts(rows, first, last)
        running = await run_in_threadpool(state.queries.running_amount, user.tenant, customer, current_period())
    except ClickHouseUnavailable as exc:
        error = f"usage is not available: {exc}"
    return page(request, "customer.html", user, customer=customer, doc=doc, days=days, ranges=RANGES, meters=meters,
                subjects=subjects, more_subjects=more, running=running, invoices=invoices, error=error)  # fmt: skip
