"""Issue a one-off invoice in the entity store: resolve the add-ons, build the document (`one_off.one_off_draft`,
pure) and finalize it with its gapless number in one transaction (`records.Recorder.finalize`: the draft and its
number together or neither), with the lifecycle events every invoice gets (`invoice.created`,
`invoice.finalized`; `invoice.paid` at once for a 0.00 invoice) in the webhook outbox and on `invoice-events`.

A request may carry a client `reference`: the invoice's id is derived from it (`one_off.one_off_id`), so a
repeated request (a retry after a timeout) answers the invoice already issued instead of billing twice; the same
reference with other fees, customer or currency is refused (`Conflict("reference")`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from meterstream.entities.add_ons import AddOn, get_add_on
from meterstream.entities.common import Conflict, Invalid, NotFound, new_ulid
from meterstream.entities.customers import get_customer_doc
from meterstream.entities.invoice_rules import check_currency
from meterstream.entities.invoices import InvoiceRow
from meterstream.entities.tax_objects import tax_overrides
from meterstream.invoice_emitter.issue import Issuing
from meterstream.invoice_emitter.one_off import OneOffFee, one_off_draft, one_off_id
from meterstream.invoice_emitter.records import Recorder
from meterstream.schemas.invoice import InvoiceDoc, InvoiceLine, decode
from meterstream.schemas.settings import Settings

__all__ = ["FeeRequest", "OneOff", "issue_one_off"]


@dataclass(frozen=True)
class FeeRequest:
    """A fee as asked for: the add-on and what this invoice changes of it (None: the add-on's own)."""

    add_on_code: str
    units: Decimal | None = None  # None: 1
    unit_amount: Decimal | None = None  # in the invoice's currency; None: the add-on's amount
    name: str | None = None  # the line's name; None: the add-on's invoice display name, else its name
    description: str | None = None  # more text after the name; None: the add-on's description
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class OneOff:
    """The issued invoice and whether this request issued it (False: a repeated `reference`)."""

    doc: InvoiceDoc
    created: bool


def _fee(i: int, request: FeeRequest, add_on: AddOn, currency: str) -> OneOffFee:
    unit_price = request.unit_amount
    if unit_price is None:
        if add_on.currency != currency:
            raise Invalid(f"fees[{i}].unit_amount", f"add-on {add_on.code!r} is priced in {add_on.currency}, the "
                                                    f"invoice is in {currency}: give the unit amount")  # fmt: skip
        unit_price = add_on.amount
    name = request.name or add_on.invoice_display_name or add_on.name
    more = request.description if request.description is not None else add_on.description
    return OneOffFee(
        add_on_id=add_on.add_on_id, code=add_on.code, description=f"{name} — {more}" if more else name,
        units=request.units if request.units is not None else Decimal(1), unit_price=unit_price,
        start=request.start, end=request.end,
    )  # fmt: skip


def _same(a: InvoiceLine, b: InvoiceLine) -> bool:
    """The same fee (its service dates aside: a retry on another day covers another day by default)."""
    fields = ("code", "description", "quantity", "unit_price", "amount", "line_key")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


def issue_one_off(
    sf: sessionmaker,
    settings: Settings,
    tenant: str,
    customer: str,
    fees: list[FeeRequest],
    *,
    currency: str | None = None,
    reference: str | None = None,
    at: datetime | None = None,
) -> OneOff:
    """Issue (finalize and number) a one-off invoice of `fees` to the tenant's `customer` (rules: `one_off.py`).
    `currency` defaults to the customer's. NotFound naming the customer or an add-on; Invalid naming the field;
    Conflict("reference") for a reference already used by another request."""
    now = (at or datetime.now(UTC)).astimezone(UTC)
    if reference is not None and not (0 < len(reference) <= 128 and reference.isprintable()):
        raise Invalid("reference", "1 to 128 printable characters")
    doc = get_customer_doc(sf, tenant, customer)
    if doc.deleted:
        raise NotFound(f"customer {customer!r} not found")
    currency = currency or doc.currency
    if currency is None:
        raise Invalid("currency", f"customer {customer!r} has no currency: give the invoice's")
    check_currency(currency)
    resolved: list[OneOffFee] = []
    for i, request in enumerate(fees):
        try:
            add_on = get_add_on(sf, tenant, request.add_on_code)
        except NotFound:
            raise NotFound(f"add-on {request.add_on_code!r} not found (fees[{i}].add_on_code)") from None
        resolved.append(_fee(i, request, add_on, currency))
    with sf() as s:
        issuing = replace(Issuing.from_settings(settings), taxes=tax_overrides(s))
    invoice_id = one_off_id(tenant, reference, new_ulid(now.timestamp()))
    try:
        draft = one_off_draft(invoice_id, doc, currency, resolved, issuing, now)
    except ValueError as exc:
        field, _, reason = str(exc).partition(": ")
        raise Invalid(field, reason or str(exc)) from None
    if reference is not None:
        with sf() as s:
            stored = s.execute(select(InvoiceRow.document).where(
                InvoiceRow.tenant == tenant, InvoiceRow.invoice_id == invoice_id)).scalar()  # fmt: skip
        if stored is not None:
            return OneOff(_repeated(decode(stored), draft, reference), False)
    final = Recorder(sf, issuing).finalize(draft)  # a concurrent request's invoice when it was first: compared
    return OneOff(_repeated(final, draft, reference) if reference is not None else final, True)


def _repeated(stored: InvoiceDoc, draft: InvoiceDoc, reference: str) -> InvoiceDoc:
    """The stored invoice of a repeated reference, when the request asks for what it holds."""
    if (
        stored.customer != draft.customer
        or stored.currency != draft.currency
        or len(stored.lines) != len(draft.lines)
        or not all(_same(a, b) for a, b in zip(stored.lines, draft.lines, strict=True))
    ):
        raise Conflict("reference", f"reference {reference!r} was used for another one-off invoice ({stored.id})")
    return stored
