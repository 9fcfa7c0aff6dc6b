"""The invoice document, defined once: typed, versioned msgspec Structs (issue #15, docs/invoices.md).

`InvoiceDoc` is what the close writes and what every rendering (HTML, PDF, PNG in `documents/`), the API
and exports read. Version 2 (`SCHEMA_VERSION`); version 1 was the close's plain dict (`document_version: 1`,
`invoice_emitter/document.py`) and `from_v1` converts it, so invoices written before this version render.

Wire format: JSON through msgspec (`encode` / `decode`). Money and quantities are Decimal inside and
decimal STRINGS on the wire (never floats); instants are RFC 3339 with an offset, dates ISO 8601. Unknown
fields are refused on decoding. The JSON Schema of the document, `schemas/invoice.schema.json`, is
generated from these Structs (`python -m meterstream.schemas.invoice` rewrites it; a test checks the file
is current), never edited by hand.

`validate(doc)` checks what the types cannot: the amounts add up to the cent (lines -> subtotal, discounts
-> discount_total, per-line tax -> tax_total and the totals by rate, total = subtotal - discount_total +
tax_total, amount_due = total - credits_applied), every amount is rounded to the currency's minor unit,
periods run forwards. It raises ValueError naming the field. Sums run in the one explicit decimal
context (`rating.money.EXACT`), so they are exact or an error.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from meterstream.rating.money import EXACT, ROUNDING, ZERO, minor_units, to_decimal

__all__ = [
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "Address",
    "BillingPeriod",
    "Discount",
    "InvoiceDoc",
    "InvoiceLine",
    "LineKind",
    "Party",
    "Status",
    "SubjectShare",
    "TaxCategory",
    "TaxTotal",
    "TierRow",
    "buyer_from_customer",
    "decode",
    "encode",
    "from_v1",
    "json_schema",
    "validate",
]

SCHEMA_VERSION = 2
SCHEMA_PATH = Path(__file__).with_name("invoice.schema.json")

Status = Literal["draft", "finalized", "paid", "partially_paid", "overdue", "voided"]
# usage: priced usage of a meter; fixed: a recurring fee (or its prorated part); fixed_credit: unused days of
# a fee billed in advance (negative); one_time; installment; minimum: a minimum-commitment true-up;
# adjustment: late usage of an earlier, closed period; discount: a negative line item counted in the
# subtotal (document-level coupons are `InvoiceDoc.discounts`, applied after the subtotal, never lines).
LineKind = Literal["usage", "fixed", "fixed_credit", "one_time", "installment", "minimum", "adjustment", "discount"]
Instant = Annotated[datetime, msgspec.Meta(tz=True)]  # an instant: an offset is required
# UNCL 5305 tax category, as EN 16931 uses it: S standard, Z zero rated, E exempt, AE reverse charge, O outside
TaxCategory = Literal["S", "Z", "E", "AE", "O"]


class _Struct(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Common options: keyword construction, immutable, unknown fields refused."""


class Address(_Struct, kw_only=True):
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    state: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2


class Party(_Struct, kw_only=True):
    """The issuer (seller, from configuration) or the buyer (the customer's billing details)."""

    name: str  # legal name
    address: Address | None = None
    tax_id: str | None = None  # e.g. an EU VAT number
    email: str | None = None
    language: str | None = None  # ISO 639-1, chooses the document's locale with the address's country


class TierRow(_Struct, kw_only=True):
    """One row of how a line's amount was priced: quantity x unit_price + flat = amount (unrounded).

    `kind` is the pricing engine's (`rating.lines.QuoteLine`): tier (with `tier`, `from`, `to`; a tier's flat
    fee is its `flat`), unit, package (quantity counts packages), tier_block, free_units, minimum_true_up,
    maximum_cap, percentage, flat, fixed_fee, event_minimum, event_maximum. `to` None: the tier is open.
    """

    kind: str
    tier: int | None = None
    from_: Decimal | None = msgspec.field(default=None, name="from")
    to: Decimal | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    flat: Decimal | None = None
    amount: Decimal
    description: str | None = None  # the engine's own wording, for kinds a renderer does not name


class SubjectShare(_Struct, kw_only=True):
    """A subject's (user's) share of a line; the shares of a line add up exactly to its quantity and amount."""

    subject: str
    quantity: Decimal
    amount: Decimal


class InvoiceLine(_Struct, kw_only=True):
    line_no: int
    kind: LineKind
    code: str  # the meter (usage, adjustment) or the charge code (fixed, one_time, ...)
    description: str
    plan: str | None = None  # rating id of the plan version: code@version (or the catalog plan id)
    subscription: str | None = None  # the subscription's external id
    quantity: Decimal
    unit: str | None = None
    unit_price: Decimal | None = None  # None when the tiers say how it was priced
    tiers: list[TierRow] = []
    start: Instant | None = None  # [start, end): the time the line covers
    end: Instant | None = None
    amount: Decimal  # rounded to the currency's minor unit, before discounts and tax
    precise_amount: Decimal | None = None  # unrounded, as priced
    # what the stream rated for the line (the per-event amounts of its events, unrounded): reconciliation only,
    # never billed; None where the stream rated nothing of it (fees, late usage)
    streamed_amount: Decimal | None = None
    discount_amount: Decimal = ZERO  # the line's part of the document's discounts (the tax base is amount - it)
    tax_code: str | None = None
    tax_rate: Decimal = ZERO  # a fraction: 0.20 is 20 %
    tax_amount: Decimal = ZERO  # rate x (amount - discount_amount), rounded once (billing/taxes.py)
    tax_category: TaxCategory | None = None
    subjects: list[SubjectShare] = []
    events: int | None = None  # usage events counted in the line
    bundle_units: Decimal | None = None  # telecom: units taken from a bundle
    applies_to: str | None = None  # adjustment: the period label it corrects
    line_key: str | None = None  # the ledger's key of the line (late usage is keyed by it)


class Discount(_Struct, kw_only=True):
    """A coupon or discount applied to the subtotal (before tax)."""

    code: str
    description: str
    kind: Literal["percentage", "fixed"]
    percentage: Decimal | None = None  # a fraction, for kind percentage: 0.10 is 10 %
    amount: Decimal  # what it takes off this invoice, rounded to the minor unit, positive
    periods_remaining: int | None = None  # None: forever (or a fixed, once-only discount)


class TaxTotal(_Struct, kw_only=True):
    """Tax by rate: the taxable amount (lines after discounts) and the tax of the lines at that rate."""

    rate: Decimal  # a fraction: 0.20 is 20 %
    taxable_amount: Decimal
    tax_amount: Decimal  # the sum of the lines' rounded tax at this rate
    tax_code: str | None = None
    category: TaxCategory | None = None
    reverse_charge: bool = False
    mention: str | None = None  # the legal mention printed with it (required for reverse charge)


class BillingPeriod(_Struct, kw_only=True):
    subscription: str
    start: Instant
    end: Instant


class InvoiceDoc(_Struct, kw_only=True):
    schema_version: Literal[2] = 2  # SCHEMA_VERSION; a document of another version is refused on decoding
    id: str
    number: str | None = None  # allocated at finalization (gapless per issuer and series); None for drafts
    status: Status
    tenant: str
    customer: str
    period: str  # the close's label, e.g. 2026-11
    period_start: Instant
    period_end: Instant
    issue_date: date | None = None
    due_date: date | None = None
    currency: str  # ISO 4217
    issuer: Party | None = None
    buyer: Party | None = None
    plan: str | None = None
    timezone: str = "UTC"  # the customer's billing time zone: local days of the period and the lines
    billing_periods: list[BillingPeriod] = []
    lines: list[InvoiceLine]
    discounts: list[Discount] = []
    taxes: list[TaxTotal] = []
    subtotal: Decimal
    discount_total: Decimal = ZERO
    tax_total: Decimal = ZERO
    total: Decimal
    credits_applied: Decimal = ZERO
    amount_due: Decimal
    notes: list[str] = []
    legal_mentions: list[str] = []


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(InvoiceDoc)


def encode(doc: InvoiceDoc) -> bytes:
    """The document as JSON (decimals as strings)."""
    return _encoder.encode(doc)


def decode(data: bytes | str) -> InvoiceDoc:
    """A version 2 document from JSON; msgspec.ValidationError names the path of a bad field."""
    return _decoder.decode(data)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of `InvoiceDoc`, generated from the Structs."""
    schema = msgspec.json.schema(InvoiceDoc)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:meterstream:schema:invoice:2",
        "title": "Meterstream invoice document, version 2",
        **schema,
    }


def json_schema_text() -> str:
    """The text of `schemas/invoice.schema.json`: `json_schema()`, indented, sorted keys, final newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------- validate


def _sum(values: Any) -> Decimal:
    total = ZERO
    for v in values:
        total = EXACT.add(total, v)
    return total


def _fmt(value: Decimal) -> str:
    return format(value, "f")


def validate(doc: InvoiceDoc) -> InvoiceDoc:
    """`doc` when its figures are consistent; else ValueError naming the first field that is not.

    Rules: schema_version is 2; the currency is an active ISO 4217 code; every money amount (line amount
    and tax, discount, tax totals, document totals) is rounded to its minor unit; lines are numbered 1..n;
    subtotal = sum of the line amounts; discount_total = sum of the discounts; tax_total = sum of the lines'
    tax = sum of the totals by rate; when there are totals by rate, their taxable amounts add up to
    subtotal - discount_total (every line falls in one rate group, as EN 16931's VAT breakdown requires);
    total = subtotal - discount_total + tax_total; amount_due = total - credits_applied; the lines' discount
    amounts, when any is set, add up to discount_total; a line's subject
    shares add up to its quantity and amount; rates are in [0, 1]; a reverse-charge total has no tax and a
    mention; periods and lines run forwards; due_date is not before issue_date; a draft has no number; the
    time zone is an IANA name.
    """
    if doc.schema_version != SCHEMA_VERSION:
        raise ValueError(f"schema_version: {doc.schema_version} is not {SCHEMA_VERSION}; convert with from_v1")
    try:
        digits = minor_units(doc.currency)
    except ValueError as exc:
        raise ValueError(f"currency: {exc}") from None

    quantum = Decimal(1).scaleb(-digits)

    def money(field: str, value: Decimal) -> Decimal:
        # round_money's test, inlined (this runs for every amount of every invoice a close writes)
        if not value.is_finite() or value.quantize(quantum, ROUND_HALF_UP, ROUNDING) != value:
            raise ValueError(f"{field}: {_fmt(value)} is not an amount in {doc.currency} ({digits} decimals)")
        return value

    def equal(field: str, value: Decimal, expected: Decimal, what: str) -> None:
        if value != expected:
            raise ValueError(f"{field}: {_fmt(value)} is not {what} ({_fmt(expected)})")

    try:
        ZoneInfo(doc.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone: {doc.timezone!r} is not an IANA time zone (e.g. Europe/Paris)") from None
    if doc.status == "draft" and doc.number is not None:
        raise ValueError(f"number: a draft has no number yet (got {doc.number!r}); numbers are given at finalization")
    if doc.period_start >= doc.period_end:
        raise ValueError(f"period_end: {doc.period_end.isoformat()} is not after period_start")
    if doc.issue_date and doc.due_date and doc.due_date < doc.issue_date:
        raise ValueError(f"due_date: {doc.due_date} is before issue_date {doc.issue_date}")
    for i, line in enumerate(doc.lines):
        at = f"lines[{i}]"
        if line.line_no != i + 1:
            raise ValueError(f"{at}.line_no: {line.line_no}, expected {i + 1} (lines are numbered 1..n in order)")
        for name in ("amount", "tax_amount", "discount_amount"):
            value = getattr(line, name)
            if not value.is_finite() or value.quantize(quantum, ROUND_HALF_UP, ROUNDING) != value:
                money(f"{at}.{name}", value)  # raises, naming the field
        if not ZERO <= line.tax_rate <= 1:
            raise ValueError(f"{at}.tax_rate: {_fmt(line.tax_rate)} is not a fraction between 0 and 1")
        if line.start is not None and line.end is not None and line.start >= line.end:
            raise ValueError(f"{at}.end: {line.end.isoformat()} is not after its start")
        if line.subjects:
            equal(f"{at}.subjects", _sum(s.amount for s in line.subjects), line.amount, "the line's amount")
            equal(f"{at}.subjects", _sum(s.quantity for s in line.subjects), line.quantity, "the line's quantity")
    equal("subtotal", money("subtotal", doc.subtotal), _sum(x.amount for x in doc.lines), "the sum of the lines")
    for i, d in enumerate(doc.discounts):
        if money(f"discounts[{i}].amount", d.amount) < 0:
            raise ValueError(f"discounts[{i}].amount: {_fmt(d.amount)} is negative (a discount takes off)")
        if d.percentage is not None and not ZERO < d.percentage <= 1:
            raise ValueError(f"discounts[{i}].percentage: {_fmt(d.percentage)} is not a fraction in (0, 1]")
    equal("discount_total", money("discount_total", doc.discount_total),
          _sum(d.amount for d in doc.discounts), "the sum of the discounts")  # fmt: skip
    if any(x.discount_amount for x in doc.lines):
        equal("discount_total", doc.discount_total, _sum(x.discount_amount for x in doc.lines),
              "the sum of the lines' discount_amount")  # fmt: skip
    equal("tax_total", money("tax_total", doc.tax_total), _sum(x.tax_amount for x in doc.lines),
          "the sum of the lines' tax")  # fmt: skip
    for i, t in enumerate(doc.taxes):
        money(f"taxes[{i}].taxable_amount", t.taxable_amount)
        money(f"taxes[{i}].tax_amount", t.tax_amount)
        if not ZERO <= t.rate <= 1:
            raise ValueError(f"taxes[{i}].rate: {_fmt(t.rate)} is not a fraction between 0 and 1")
        if t.reverse_charge and (t.tax_amount != 0 or not t.mention):
            raise ValueError(f"taxes[{i}].reverse_charge: a reverse-charge total has no tax and a legal mention")
    if doc.taxes:
        equal("taxes", _sum(t.tax_amount for t in doc.taxes), doc.tax_total, "tax_total")
        equal("taxes", _sum(t.taxable_amount for t in doc.taxes), EXACT.subtract(doc.subtotal, doc.discount_total),
              "subtotal - discount_total")  # fmt: skip
    expected = EXACT.add(EXACT.subtract(doc.subtotal, doc.discount_total), doc.tax_total)
    equal("total", money("total", doc.total), expected, "subtotal - discount_total + tax_total")
    money("credits_applied", doc.credits_applied)
    equal("amount_due", money("amount_due", doc.amount_due), EXACT.subtract(doc.total, doc.credits_applied),
          "total - credits_applied")  # fmt: skip
    return doc


# --------------------------------------------------------------------------------------------- from v1

_V1_KINDS: dict[str | None, str] = {
    None: "usage",
    "usage": "usage",
    "fixed": "fixed",
    "fixed_credit": "fixed_credit",
    "one_time": "one_time",
    "installment": "installment",
    "minimum_true_up": "minimum",
    "adjustment": "adjustment",
}
_V1_STATUS = {"final": "finalized", "draft": "draft"}


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@lru_cache(maxsize=1024)  # a pure function of the label; a close asks it for every document
def _utc_month(label: str) -> tuple[datetime, datetime] | None:
    """[start, end) of the UTC month `label` (YYYY-MM), the periods of the catalog file's close; else None."""
    try:
        year, month = int(label[:4]), int(label[5:7])
        start = datetime(year, month, 1, tzinfo=UTC)
    except (ValueError, IndexError):
        return None
    if len(label) != 7 or label[4] != "-":
        return None
    return start, datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)


# text -> value: the same texts recur (0, tier bounds, unit prices), and a Decimal is immutable
_NUMS: dict[str, Decimal] = {}
_NUMS_KEPT = 200_000


def _num(value: Any) -> Decimal:
    """`to_decimal`, faster for the usual case: the plain decimal text a version 1 document holds."""
    if type(value) is str:
        result = _NUMS.get(value)
        if result is not None:
            return result
        try:
            result = Decimal(value)
        except InvalidOperation:
            return to_decimal(value)  # its error
        if result.is_finite():
            if len(_NUMS) >= _NUMS_KEPT:
                _NUMS.clear()
            _NUMS[value] = result
            return result
    return to_decimal(value)


def _dec(value: Any) -> Decimal | None:
    return None if value is None else _num(value)


def _tiers(breakdown: list[dict[str, Any]]) -> list[TierRow]:
    """Version 1 breakdown entries as rows; a tier's flat fee (kind tier_flat) joins its tier's row."""
    rows: list[TierRow] = []
    for entry in breakdown:
        get = entry.get
        kind = entry["kind"]
        amount = _num(entry["amount"])
        if kind == "tier_flat":
            tier = get("tier")
            at = next((k for k, r in enumerate(rows) if r.kind == "tier" and r.tier == tier), None)
            if at is not None:
                row = rows[at]
                rows[at] = msgspec.structs.replace(row, flat=amount, amount=EXACT.add(row.amount, amount))
                continue
            rows.append(TierRow(kind="tier", tier=tier, from_=_dec(get("from_quantity")), to=_dec(get("up_to")),
                                quantity=ZERO, unit_price=None, flat=amount, amount=amount,
                                description=get("description")))  # fmt: skip
            continue
        rows.append(TierRow(kind=kind, tier=get("tier"), from_=_dec(get("from_quantity")), to=_dec(get("up_to")),
                            quantity=_dec(get("quantity")), unit_price=_dec(get("unit_amount")), flat=None,
                            amount=amount, description=get("description")))  # fmt: skip
    return rows


# id(breakdown list) -> (the list, its rows): the close shares one breakdown list among the documents that show
# the same (price, quantity) (invoice_emitter/document.py MeterPricer), and documents are not modified once built;
# holding the list keeps its id from being reused. Rows are read-only (frozen Structs).
_TIERS: dict[int, tuple[list[dict[str, Any]], list[TierRow]]] = {}
_TIERS_KEPT = 50_000


def _v1_line(line: dict[str, Any], doc_start: datetime, doc_end: datetime, plan: str | None) -> InvoiceLine:
    get = line.get
    kind = _V1_KINDS.get(get("kind"))
    if kind is None:
        raise ValueError(f"lines[{get('line_no')}].kind: {get('kind')!r} is not a version 1 line kind")
    breakdown = get("breakdown")
    if breakdown:
        known = _TIERS.get(id(breakdown))
        if known is not None and known[0] is breakdown:
            tiers = known[1]
        else:
            tiers = _tiers(breakdown)
            if len(_TIERS) >= _TIERS_KEPT:
                _TIERS.clear()
            _TIERS[id(breakdown)] = (breakdown, tiers)
    else:
        tiers = []
    unit_price = _dec(get("unit_price"))
    if unit_price is None and len(tiers) == 1 and tiers[0].kind == "unit":
        unit_price = tiers[0].unit_price
    start = get("start")
    start = _instant(start) if start else None
    end = get("end")
    end = _instant(end) if end else None
    applies_to = get("applies_to")
    if start is None and end is None:
        # the file path's lines cover the document's period; an adjustment covers the period it corrects
        start, end = (_utc_month(applies_to) or (None, None)) if applies_to else (doc_start, doc_end)
    return InvoiceLine(
        line_no=int(line["line_no"]),
        kind=kind,  # type: ignore[arg-type]
        code=get("code") or get("meter") or "",
        description=get("description") or "",
        plan=get("plan") or plan,
        subscription=get("subscription"),
        quantity=_num(get("quantity", "0")),
        unit_price=unit_price,
        tiers=tiers,
        start=start,
        end=end,
        amount=_num(line["amount"]),
        precise_amount=_dec(get("precise_amount")),
        streamed_amount=_dec(get("streamed_amount")),
        events=get("events"),
        bundle_units=_dec(get("bundle_units")),
        applies_to=applies_to,
        line_key=get("line_key"),
    )


def from_v1(doc: dict[str, Any], issuer: Party | None = None, buyer: Party | None = None) -> InvoiceDoc:
    """A version 1 invoice (the close's dict, `document_version: 1`) as a version 2 document.

    Carried over: id (`invoice_id`), status (`final` -> `finalized`, `draft` stays), tenant, customer, period,
    plan, currency, timezone, billing periods, lines (a line without a plan has the document's; kinds: none ->
    usage, minimum_true_up -> minimum; the meter or charge code as `code`; breakdown -> tiers with each tier's
    flat fee on its row; a single unit price as `unit_price`; `streamed_amount` as it is), subtotal and
    total. Version 1 knew no numbers,
    issue or due dates, parties, discounts or taxes: number and dates stay None, parties are the ones given,
    tax is 0 on every line (version 1 wrote `tax: "0"`; anything else is refused). Without period_start /
    period_end (the catalog file's close), the period is the UTC month of the label, and lines without their
    own [start, end) cover it (an adjustment: the UTC month it `applies_to`).
    ValueError naming the field when the dict is not a version 1 invoice.
    """
    version = doc.get("document_version")
    if version != 1:
        raise ValueError(f"document_version: {version!r} is not 1")
    status = _V1_STATUS.get(doc.get("status"))
    if status is None:
        raise ValueError(f"status: {doc.get('status')!r} is not a version 1 status (final, draft)")
    if to_decimal(doc.get("tax", "0")) != 0:
        raise ValueError(f"tax: {doc.get('tax')!r}; version 1 documents carry no tax")
    if doc.get("period_start") and doc.get("period_end"):
        start, end = _instant(doc["period_start"]), _instant(doc["period_end"])
    else:
        month = _utc_month(str(doc.get("period")))
        if month is None:
            raise ValueError(f"period: {doc.get('period')!r} is not YYYY-MM and the document has no period_start")
        start, end = month
    lines = [_v1_line(line, start, end, doc.get("plan") or None) for line in doc.get("lines", [])]
    subtotal = _num(doc["subtotal"])
    total = _num(doc["total"])
    return InvoiceDoc(
        id=doc["invoice_id"],
        status=status,  # type: ignore[arg-type]
        tenant=doc["tenant"],
        customer=doc["customer"],
        period=doc["period"],
        period_start=start,
        period_end=end,
        currency=doc["currency"],
        issuer=issuer,
        buyer=buyer,
        plan=doc.get("plan") or None,
        timezone=doc.get("timezone") or "UTC",
        billing_periods=[
            BillingPeriod(subscription=p["subscription"], start=_instant(p["start"]), end=_instant(p["end"]))
            for p in doc.get("billing_periods", [])
        ],
        lines=lines,
        subtotal=subtotal,
        total=total,
        amount_due=total,
    )


def buyer_from_customer(customer: Any) -> Party:
    """The buyer block from a customer's billing details (`schemas.entities.CustomerDoc`): the legal name (else
    the name), tax id, email and address; the customer's country fills the address's when it has none."""
    addr = customer.address
    country = (addr.country if addr is not None else None) or customer.country
    address = None
    if addr is not None or country:
        address = Address(
            line1=getattr(addr, "line1", None),
            line2=getattr(addr, "line2", None),
            city=getattr(addr, "city", None),
            postal_code=getattr(addr, "postal_code", None),
            state=getattr(addr, "state", None),
            country=country,
        )
    return Party(name=customer.legal_name or customer.name, address=address, tax_id=customer.tax_id,
                 email=customer.email)  # fmt: skip


def _main() -> None:  # pragma: no cover - the generator of the schema file
    SCHEMA_PATH.write_text(json_schema_text())
    print(f"wrote {SCHEMA_PATH}")


if __name__ == "__main__":  # pragma: no cover
    _main()
