"""A one-off invoice: add-on fees billed once, outside any billing period (Lago's `POST /invoices`). Pure: no I/O,
no clock (the caller passes the instant); `invoice_emitter/one_off_store.py` loads and stores.

`one_off_draft` builds the version 1 document of the fees and hands it to the close's own `issue_draft`, so the
buyer, tax, rounding and validation are the close's, line for line:

- each fee is a `one_time` line: code = the add-on's code, `line_key` = `add_on:<add-on id>` (how the Lago layer
  knows an add-on fee), quantity = units (> 0), unit price = the fee's (≥ 0, in the invoice's currency), amount =
  units x unit price in `money.EXACT`, rounded once to the currency's minor unit half away from zero
  (`round_money`), the exact product kept as `precise_amount`; subtotal = the sum of the rounded lines;
- the document's period is the local day (in the customer's billing time zone) on which it is issued, labelled
  `one-off` (ONE_OFF_PERIOD: never a YYYY-MM label, so no close, coupon or late-fee rule that reads earlier
  periods' invoices counts it); a fee without its own [start, end) covers that day;
- issue date = that day, due date = issue date + the customer's payment terms (`issue_draft`);
- no coupons and no pending late fees (those belong to the subscription invoices); the customer's taxes (explicit
  Lago taxes, else the rules) apply to every line, as on any invoice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from meterstream.invoice_emitter.document import DOCUMENT_VERSION, with_lines
from meterstream.invoice_emitter.issue import Issuing, issue_draft
from meterstream.rating.money import EXACT, round_money
from meterstream.schemas.entities import CustomerDoc
from meterstream.schemas.invoice import InvoiceDoc

__all__ = ["ADD_ON_KEY", "FEES_MAX", "ONE_OFF_PERIOD", "OneOffFee", "is_add_on_line", "one_off_draft", "one_off_id"]

ONE_OFF_PERIOD = "one-off"  # the `period` label of every one-off invoice
ADD_ON_KEY = "add_on:"  # a one-off line's `line_key`: this prefix and the add-on's id
FEES_MAX = 100  # fees on one one-off invoice
# each figure's digits: units x price stays exact in money.EXACT (60 digits) and a line under 10**15 fits every
# amount column of the store (minor units in a signed 64-bit integer)
_UNITS_MAX = 10**12
_PRICE_MAX = 10**15
_DECIMALS_MAX = 12


def _decimals(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


@dataclass(frozen=True)
class OneOffFee:
    """One fee of a one-off invoice, resolved: the add-on it bills and the figures of this invoice."""

    add_on_id: str
    code: str
    description: str  # what the line says
    units: Decimal  # > 0
    unit_price: Decimal  # ≥ 0, in the invoice's currency (major units)
    start: datetime | None = None  # [start, end): the service the fee is for; None: the invoice's day
    end: datetime | None = None


def one_off_id(tenant: str, reference: str | None, new_id: str) -> str:
    """The invoice's id: from the client's `reference` when it gave one (a repeated request names the same invoice),
    else from `new_id` (a fresh ULID)."""
    if reference is None:
        return f"INV-ONEOFF-{new_id}"
    digest = hashlib.sha256(f"{tenant}\x1fone-off\x1f{reference}".encode()).hexdigest()[:20]
    return f"INV-ONEOFF-{digest.upper()}"


def is_add_on_line(line_key: str | None) -> bool:
    """Whether an invoice line bills an add-on (a one-off invoice's fee)."""
    return line_key is not None and line_key.startswith(ADD_ON_KEY)


def _check(fees: list[OneOffFee]) -> None:
    if not fees:
        raise ValueError("fees: a one-off invoice needs at least one fee")
    if len(fees) > FEES_MAX:
        raise ValueError(f"fees: at most {FEES_MAX} fees on one invoice (got {len(fees)})")
    for i, fee in enumerate(fees):
        if not fee.units.is_finite() or fee.units <= 0:
            raise ValueError(f"fees[{i}].units: must be more than 0 (got {fee.units})")
        if fee.units >= _UNITS_MAX or _decimals(fee.units) > _DECIMALS_MAX:
            raise ValueError(f"fees[{i}].units: less than {_UNITS_MAX:,} with at most {_DECIMALS_MAX} decimals")
        if not fee.unit_price.is_finite() or fee.unit_price < 0:
            raise ValueError(f"fees[{i}].unit_amount: must not be negative (got {fee.unit_price})")
        if fee.unit_price >= _PRICE_MAX or _decimals(fee.unit_price) > _DECIMALS_MAX:
            raise ValueError(f"fees[{i}].unit_amount: less than {_PRICE_MAX:,} with at most {_DECIMALS_MAX} decimals")
        if EXACT.multiply(fee.units, fee.unit_price) >= _PRICE_MAX:
            raise ValueError(f"fees[{i}].units: units x unit amount must be less than {_PRICE_MAX:,}")
        if (fee.start is None) != (fee.end is None):
            raise ValueError(f"fees[{i}].{'to' if fee.end is None else 'from'}_datetime: give both ends or neither")
        if fee.start is not None and fee.end is not None and fee.start >= fee.end:
            raise ValueError(f"fees[{i}].to_datetime: {fee.end.isoformat()} is not after from_datetime")


def _line(fee: OneOffFee, currency: str) -> dict[str, object]:
    precise = EXACT.multiply(fee.units, fee.unit_price)
    line: dict[str, object] = {
        "kind": "one_time", "code": fee.code, "description": fee.description, "quantity": format(fee.units, "f"),
        "unit_price": format(fee.unit_price, "f"), "amount": format(round_money(precise, currency), "f"),
        "precise_amount": format(precise, "f"), "line_key": f"{ADD_ON_KEY}{fee.add_on_id}",
    }  # fmt: skip
    if fee.start is not None and fee.end is not None:
        line["start"] = fee.start.astimezone(UTC).isoformat()
        line["end"] = fee.end.astimezone(UTC).isoformat()
    return line


def one_off_draft(
    invoice_id: str,
    customer: CustomerDoc,
    currency: str,
    fees: list[OneOffFee],
    issuing: Issuing,
    at: datetime,
) -> InvoiceDoc:
    """The validated draft of a one-off invoice of `fees` to `customer`, issued at `at` (rules: module docstring).
    ValueError naming the field when it cannot be issued."""
    _check(fees)
    zone = ZoneInfo(customer.timezone)
    day = at.astimezone(zone).date()
    start = datetime.combine(day, time(), zone)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    v1 = {
        "document_version": DOCUMENT_VERSION, "invoice_id": invoice_id, "status": "final",
        "tenant": customer.tenant, "customer": customer.external_id, "period": ONE_OFF_PERIOD, "plan": "",
        "currency": currency, "period_start": start.astimezone(UTC).isoformat(),
        "period_end": end.astimezone(UTC).isoformat(), "lines": [], "subtotal": "0", "tax": "0", "total": "0",
    }  # fmt: skip
    v1 = with_lines(v1, [_line(fee, currency) for fee in fees])
    terms = replace(issuing, issue_date=day, coupons={}, charges={})
    return issue_draft(v1, terms, customer)
