"""Pages of the invoice store's lists: invoices, payments and credit notes, in one stable order each.

Orders (every key ends in a unique column, so the order is total and pages never overlap or skip):
- invoices: issue date, number (drafts, without one, last on their day), invoice id — as `invoices.list_invoices`;
- payments: date paid, then the order recorded — as `payments.list_payments`;
- credit notes: the order issued — as `credit_notes.list_credit_notes`.

Two ways to page, over the same orders and filters:
- **keyset** (`cursor`), for the own API: a page is the `limit` rows after the cursor, and `next_cursor` is the
  last row's key (an opaque URL-safe text), None on the last page. A row inserted or changed before the cursor
  while a client pages does not shift the rows after it (an offset would repeat or skip one).
- **page number** (`offset` + `count`), for Lago's `page` / `per_page`: the rows from `offset`, and the total
  number of rows matching the filters.

A cursor of another list, or text that is no cursor, is `Invalid("cursor", ...)`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.orm import sessionmaker

from meterstream.entities.common import Invalid
from meterstream.entities.credit_notes import CreditNote, CreditNoteRow, note_record
from meterstream.entities.customers import CustomerRow, like_pattern
from meterstream.entities.invoice_rules import STATUSES
from meterstream.entities.invoices import Invoice, InvoiceRow, to_record
from meterstream.entities.payments import Payment, PaymentRow, payment_record

__all__ = ["MAX_LIMIT", "Page", "credit_note_page", "invoice_page", "payment_page"]

MAX_LIMIT = 1000
T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None = None  # keyset paging: None on the last page
    total: int | None = None  # page-number paging (count=True): the rows matching the filters


# --- cursors -------------------------------------------------------------------------------------------


def _encode(kind: str, key: Sequence[Any]) -> str:
    raw = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(kind: str, cursor: str, shape: Sequence[type]) -> list[Any]:
    bad = Invalid("cursor", "not a cursor of this list (pass back the next_cursor of the previous page as it is)")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    if not isinstance(key, list) or len(key) != len(shape) + 1 or key[0] != kind:
        raise bad
    values = key[1:]
    for value, kind_of in zip(values, shape, strict=True):
        if kind_of is date:
            try:
                date.fromisoformat(value)
            except (TypeError, ValueError):
                raise bad from None
        elif not isinstance(value, kind_of) or isinstance(value, bool):
            raise bad
    return [date.fromisoformat(v) if k is date else v for v, k in zip(values, shape, strict=True)]


def _after(columns: Sequence[Any], values: Sequence[Any]) -> Any:
    """Rows whose key (columns, in order) comes after `values`: (a > x) or (a = x and b > y) or ...
    (written out rather than as a row-value comparison, so each value binds with its column's type)."""
    terms = []
    for i, column in enumerate(columns):
        terms.append(and_(*(c == v for c, v in zip(columns[:i], values[:i], strict=True)), column > values[i]))
    return or_(*terms)


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise Invalid("limit", f"an integer from 1 to {MAX_LIMIT} (got {limit!r})")


def _page(
    sf: sessionmaker,
    stmt: Select[Any],
    order: Sequence[Any],
    key_of: Callable[[Any], list[Any]],
    record: Callable[[Any], T],
    kind: str,
    shape: Sequence[type],
    limit: int,
    cursor: str | None,
    offset: int | None,
    count: bool,
) -> Page[T]:
    _check_limit(limit)
    if cursor is not None and offset is not None:
        raise Invalid("cursor", "give a cursor or an offset, not both")
    if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int) or offset < 0):
        raise Invalid("offset", f"an integer >= 0 (got {offset!r})")
    with sf() as s:
        total = s.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) if count else None
        query = stmt
        if cursor is not None:
            query = query.where(_after(order, _decode(kind, cursor, shape)))
        query = query.order_by(*order).limit(limit + 1)
        if offset:
            query = query.offset(offset)
        rows = s.scalars(query).all()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode(kind, key_of(rows[-1])) if more and rows else None
        return Page([record(r) for r in rows], next_cursor, total)


# --- the three lists -----------------------------------------------------------------------------------

_DRAFT_LAST = case((InvoiceRow.number.is_(None), 1), else_=0)
_INVOICE_ORDER = (InvoiceRow.issue_date, _DRAFT_LAST, func.coalesce(InvoiceRow.number, ""), InvoiceRow.invoice_id)


@dataclass(frozen=True)
class InvoiceFilter:
    """More ways to narrow the invoice list (None: no condition): the currency; the issue date in [issued_from,
    issued_to] (both inclusive); what the invoice asks for (`billed_minor`: the total less prepaid credits, Lago's
    `total_amount_cents`) in [billed_from, billed_to] minor units; `one_off` True for one-off invoices only
    (period label `one-off`, invoice_emitter/one_off.py), False for the others; `search`: text found (case aside)
    in the invoice id, its number, the customer's external id, or the customer's name or email."""

    currency: str | None = None
    issued_from: date | None = None
    issued_to: date | None = None
    billed_from: int | None = None
    billed_to: int | None = None
    one_off: bool | None = None
    search: str | None = None


ONE_OFF_LABEL = "one-off"  # invoice_emitter/one_off.py ONE_OFF_PERIOD (the store does not import the emitter)


def _filtered(stmt: Select, tenant: str, f: InvoiceFilter) -> Select:
    if f.currency is not None:
        stmt = stmt.where(InvoiceRow.currency == f.currency.upper())
    if f.issued_from is not None:
        stmt = stmt.where(InvoiceRow.issue_date >= f.issued_from)
    if f.issued_to is not None:
        stmt = stmt.where(InvoiceRow.issue_date <= f.issued_to)
    if f.billed_from is not None:
        stmt = stmt.where(InvoiceRow.billed_minor >= f.billed_from)
    if f.billed_to is not None:
        stmt = stmt.where(InvoiceRow.billed_minor <= f.billed_to)
    if f.one_off is not None:
        stmt = stmt.where(InvoiceRow.period == ONE_OFF_LABEL if f.one_off else InvoiceRow.period != ONE_OFF_LABEL)
    if f.search is not None:
        pattern = like_pattern(f.search)
        external_id = func.coalesce(CustomerRow.key, CustomerRow.id)  # entities/customers.py: the key, else the id
        named = select(external_id).where(CustomerRow.tenant == tenant, or_(
            CustomerRow.name.ilike(pattern, escape="\\"),
            CustomerRow.primary_email.ilike(pattern, escape="\\")))  # fmt: skip
        stmt = stmt.where(or_(
            InvoiceRow.invoice_id.ilike(pattern, escape="\\"), InvoiceRow.number.ilike(pattern, escape="\\"),
            InvoiceRow.customer.ilike(pattern, escape="\\"), InvoiceRow.customer.in_(named)))  # fmt: skip
    return stmt


def invoice_page(
    sf: sessionmaker,
    tenant: str,
    *,
    customer: str | None = None,
    statuses: Collection[str] | None = None,
    period: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
    offset: int | None = None,
    count: bool = False,
    where: InvoiceFilter | None = None,
) -> Page[Invoice]:
    """A page of the tenant's invoices (of one customer, in `statuses`, of one period, matching `where` when given),
    by issue date, number (drafts last), invoice id. `statuses` empty: no invoice matches."""
    stmt = select(InvoiceRow).where(InvoiceRow.tenant == tenant)
    if customer is not None:
        stmt = stmt.where(InvoiceRow.customer == customer)
    if statuses is not None:
        unknown = sorted(set(statuses) - set(STATUSES))
        if unknown:
            raise Invalid("status", f"one of {', '.join(STATUSES)} (got {unknown[0]!r})")
        stmt = stmt.where(InvoiceRow.status.in_(sorted(statuses)))
    if period is not None:
        stmt = stmt.where(InvoiceRow.period == period)
    if where is not None:
        stmt = _filtered(stmt, tenant, where)

    def key(row: InvoiceRow) -> list[Any]:
        return [row.issue_date.isoformat(), 1 if row.number is None else 0, row.number or "", row.invoice_id]

    return _page(sf, stmt, _INVOICE_ORDER, key, to_record, "inv", (date, int, str, str), limit, cursor, offset,
                 count)  # fmt: skip


def payment_page(
    sf: sessionmaker,
    tenant: str,
    *,
    customer: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
    offset: int | None = None,
    count: bool = False,
) -> Page[Payment]:
    """A page of the tenant's payments (of one customer when given), by date paid, then the order recorded."""
    stmt = select(PaymentRow).where(PaymentRow.tenant == tenant)
    if customer is not None:
        stmt = stmt.where(PaymentRow.customer == customer)
    return _page(sf, stmt, (PaymentRow.paid_on, PaymentRow.id), lambda r: [r.paid_on.isoformat(), r.id],
                 payment_record, "pay", (date, int), limit, cursor, offset, count)  # fmt: skip


def credit_note_page(
    sf: sessionmaker,
    tenant: str,
    *,
    invoice_id: str | None = None,
    customer: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
    offset: int | None = None,
    count: bool = False,
) -> Page[CreditNote]:
    """A page of the tenant's credit notes (of one invoice, one customer when given), in the order issued."""
    stmt = select(CreditNoteRow).where(CreditNoteRow.tenant == tenant)
    if invoice_id is not None:
        stmt = stmt.where(CreditNoteRow.invoice_id == invoice_id)
    if customer is not None:
        stmt = stmt.where(CreditNoteRow.customer == customer)
    return _page(sf, stmt, (CreditNoteRow.id,), lambda r: [r.id], note_record, "cn", (int,), limit, cursor, offset,
                 count)  # fmt: skip
