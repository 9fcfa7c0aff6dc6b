"""An invoice document (`schemas.invoice.InvoiceDoc`) as a UBL 2.1 Invoice following EN 16931. Pure.

`to_ubl(doc) -> bytes` writes the CIUS-neutral core of EN 16931 (customization id `urn:cen.eu:en16931:2017`),
in UBL 2.1's element order, built with lxml (no text concatenation; every value escaped):

- header: number (BT-1), issue and due dates (BT-2, BT-9), type code 380, the notes and legal mentions
  (BT-22), currency (BT-5), the customer's id as buyer reference (BT-10), the invoice period (BG-14) as the
  customer's local days (the period's end instant is exclusive, so the last day is the day before it);
- seller and buyer (BG-4, BG-7): legal name, postal address with its country, the tax id as VAT identifier
  when it starts with a country prefix (BT-31, BT-48; BR-CO-9), else as the seller's tax registration and
  legal registration (BT-32, BT-30) or the buyer's legal registration (BT-47), the email as contact. An
  invoice not subject to VAT (category O) carries no VAT identifier (BR-O-2): the ids are registrations then,
  and it has no other category (BR-O-11);
- document-level allowances (BG-20) for the discounts, each with the VAT category and rate of the lines it
  reduces (BR-32..BR-33): one allowance per discount when every line is in one VAT group, else one per group
  with the group's share (the lines' `discount_amount`, or the group's taxable amount);
- the VAT breakdown (BG-23): one subtotal per (category, rate) with the taxable amount (lines - their
  discounts), the tax (the lines' rounded tax, which `billing/taxes.py` rounds per group: BR-CO-17), the rate
  as a percentage (none for O: BR-O-5..9), and for AE, E and O the exemption reason (the document's legal
  mention) with its VATEX code for AE and O;
- the totals (BG-22): LineExtensionAmount = the lines (BR-CO-10), AllowanceTotalAmount = the discounts
  (BR-CO-11), TaxExclusiveAmount = lines - discounts (BR-CO-13), TaxInclusiveAmount = + tax (BR-CO-15),
  PrepaidAmount = prepaid credits applied, PayableAmount = what is due (BR-CO-16);
- each line (BG-25): quantity with its UN/ECE Recommendation 20 unit code (`unit_code`; `C62`, "one", when
  our unit has none, the unit's own name then kept as an item property), net amount (BT-131, before the
  document's discounts), the period it covers (BG-26), the item's name, seller's id (the meter or charge
  code) and VAT category (BG-30), and the net price (BT-146). The price is never negative (BR-27): a negative
  line (a credit for unused days) carries its sign on the quantity. When the unit price does not reproduce
  the line's amount once rounded (tiered and volume prices, prorated fees) the price is the line's amount per
  a base quantity (BT-149) equal to the quantity, so quantity x price / base quantity is the amount exactly.

Amounts are the document's exact decimals (already rounded to the currency's minor unit); rates are written
as percentages (0.0725 -> 7.25). ValueError naming the field when the document cannot be an EN 16931 invoice:
a draft or a document without a number or an issue date (BR-2, BR-3), no seller or buyer, their name or
country (BR-6..BR-11), a seller without a tax id (BR-CO-26, BR-S-2), reverse charge without the buyer's VAT id
(BR-AE-2), or a line whose VAT category cannot be told.

US sales tax and other non-VAT taxes of the tax table are written as category S at their rate: EN 16931
knows only VAT (docs/invoices.md, "E-invoice").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal
from zoneinfo import ZoneInfo

from lxml import etree

from meterstream.rating.money import EXACT, ZERO, round_money
from meterstream.schemas.invoice import Discount, InvoiceDoc, InvoiceLine, Party, validate

__all__ = [
    "CREDIT_NOTE_NS",
    "CUSTOMIZATION_ID",
    "INVOICE_NS",
    "NS",
    "UNIT_CODES",
    "CreditSplit",
    "credit_note_to_ubl",
    "split_credit",
    "to_ubl",
    "unit_code",
]

CUSTOMIZATION_ID = "urn:cen.eu:en16931:2017"
INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
CREDIT_NOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
NS = {"inv": INVOICE_NS, "cac": CAC, "cbc": CBC}
COMMERCIAL_INVOICE = "380"  # UNCL 1001
CREDIT_NOTE = "381"
_NSMAP = {None: INVOICE_NS, "cac": CAC, "cbc": CBC}
_CN_NSMAP = {None: CREDIT_NOTE_NS, "cac": CAC, "cbc": CBC}
_SPLIT = Context(prec=60, rounding=ROUND_HALF_UP)  # gross -> net division, rounded to the minor unit after

# Our units (case-insensitive) -> UN/ECE Recommendation 20 codes; anything else is C62 ("one").
UNIT_CODES: dict[str, str] = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), "SEC"),
    **dict.fromkeys(("min", "minute", "minutes"), "MIN"),
    **dict.fromkeys(("h", "hr", "hour", "hours"), "HUR"),
    **dict.fromkeys(("day", "days"), "DAY"),
    **dict.fromkeys(("week", "weeks"), "WEE"),
    **dict.fromkeys(("month", "months"), "MON"),
    **dict.fromkeys(("year", "years"), "ANN"),
    **dict.fromkeys(("b", "byte", "bytes"), "AD"),
    **dict.fromkeys(("kb", "kilobyte", "kilobytes"), "2P"),
    **dict.fromkeys(("mb", "megabyte", "megabytes"), "4L"),
    **dict.fromkeys(("gb", "gigabyte", "gigabytes"), "E34"),
    **dict.fromkeys(("tb", "terabyte", "terabytes"), "E35"),
    **dict.fromkeys(("kwh", "kilowatt hour", "kilowatt hours"), "KWH"),
    **dict.fromkeys(("percent", "%"), "P1"),
}
ONE = "C62"
_VATEX = {"AE": "VATEX-EU-AE", "O": "VATEX-EU-O"}  # CEF VATEX codes of the exemption reasons we know the basis of
_DEFAULT_REASON = {"AE": "Reverse charge", "E": "Exempt from VAT", "O": "Not subject to VAT"}
_VAT_ID = re.compile(r"^[A-Z]{2}[0-9A-Za-z+*.]{2,}$")  # BR-CO-9: a VAT identifier starts with its country prefix


def unit_code(unit: str | None) -> str:
    """The UN/ECE Recommendation 20 code of our unit (`GB` -> E34, `hours` -> HUR); C62 ("one") otherwise."""
    return UNIT_CODES.get((unit or "").strip().lower(), ONE)


# ---------------------------------------------------------------------------------------------- helpers


def _text(value: Decimal) -> str:
    return format(value, "f")


def _percent(rate: Decimal) -> str:
    return format(EXACT.multiply(rate, Decimal(100)).normalize(), "f")


def _sum(values: Iterable[Decimal]) -> Decimal:
    total = ZERO
    for v in values:
        total = EXACT.add(total, v)
    return total


class _Builder:
    """Appends UBL elements in order; every amount carries the document's currency."""

    def __init__(self, currency: str) -> None:
        self.currency = currency

    @staticmethod
    def agg(parent: etree._Element, name: str) -> etree._Element:
        return etree.SubElement(parent, f"{{{CAC}}}{name}")

    @staticmethod
    def basic(parent: etree._Element, name: str, value: str, **attrs: str) -> etree._Element:
        el = etree.SubElement(parent, f"{{{CBC}}}{name}", attrs)
        el.text = value
        return el

    def amount(self, parent: etree._Element, name: str, value: Decimal) -> etree._Element:
        return self.basic(parent, name, _text(value), currencyID=self.currency)


# ------------------------------------------------------------------------------------------- tax groups


@dataclass
class _Group:
    """One line of the VAT breakdown: a (category, rate) pair and what falls in it."""

    category: str
    rate: Decimal
    lines: list[InvoiceLine] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    discount: Decimal = ZERO

    @property
    def net(self) -> Decimal:
        return _sum(x.amount for x in self.lines)

    @property
    def taxable(self) -> Decimal:
        return EXACT.subtract(self.net, self.discount)

    @property
    def tax(self) -> Decimal:
        return _sum(x.tax_amount for x in self.lines)


def _category(doc: InvoiceDoc, i: int, line: InvoiceLine) -> str:
    if line.tax_category is not None:
        return line.tax_category
    known = {t.category for t in doc.taxes if t.category is not None and t.rate == line.tax_rate}
    if len(known) == 1:
        return known.pop()
    if line.tax_rate > 0:
        return "S"
    raise ValueError(f"lines[{i}].tax_category: not given and the rate is 0; an EN 16931 invoice needs each line's "
                     "VAT category (S, Z, E, AE or O)")  # fmt: skip


def _groups(doc: InvoiceDoc) -> list[_Group]:
    groups: dict[tuple[str, Decimal], _Group] = {}
    for i, line in enumerate(doc.lines):
        key = (_category(doc, i, line), line.tax_rate)
        groups.setdefault(key, _Group(*key)).lines.append(line)
    for t in doc.taxes:  # the legal mentions of the tax totals are the exemption reasons of their groups
        g = groups.get((t.category or "", t.rate))
        if g is not None and t.mention and t.mention not in g.reasons:
            g.reasons.append(t.mention)
    if doc.discount_total:
        _place_discounts(doc, list(groups.values()))
    return list(groups.values())


def _place_discounts(doc: InvoiceDoc, groups: list[_Group]) -> None:
    """Each group's part of the document's discounts: its lines' `discount_amount` when the lines carry them,
    else (one group) all of it, else the group's net amount less its taxable amount in the tax totals."""
    if any(x.discount_amount for x in doc.lines):
        for g in groups:
            g.discount = _sum(x.discount_amount for x in g.lines)
        return
    if len(groups) == 1:
        groups[0].discount = doc.discount_total
        return
    for g in groups:
        totals = [t for t in doc.taxes if (t.category, t.rate) == (g.category, g.rate)]
        if not totals:
            raise ValueError(f"discounts: cannot tell which VAT group ({g.category} {_percent(g.rate)} %) they "
                             "reduce: the lines carry no discount_amount and the document no tax totals")  # fmt: skip
        g.discount = EXACT.subtract(g.net, _sum(t.taxable_amount for t in totals))


# ------------------------------------------------------------------------------------------------ parts


def _party(b: _Builder, parent: etree._Element, party: Party | None, role: str, seller: bool, vat_ids: bool) -> None:
    """The party with its tax id as VAT identifier when it is one and `vat_ids` (not on an O invoice: BR-O-2),
    else as the seller's tax registration and legal registration (BT-32, BT-30) or the buyer's (BT-47)."""
    if party is None:
        raise ValueError(f"{role}: an EN 16931 invoice names the {'seller' if seller else 'buyer'} (BG-4, BG-7)")
    if not party.name.strip():
        raise ValueError(f"{role}.name: the legal name is required (BR-6, BR-7)")
    country = party.address.country if party.address is not None else None
    if not country:
        raise ValueError(f"{role}.address.country: the country code is required (BR-9, BR-11)")
    p = b.agg(parent, "Party")
    address = party.address
    assert address is not None
    post = b.agg(p, "PostalAddress")
    for name, value in (("StreetName", address.line1), ("AdditionalStreetName", address.line2),
                        ("CityName", address.city), ("PostalZone", address.postal_code),
                        ("CountrySubentity", address.state)):  # fmt: skip
        if value:
            b.basic(post, name, value)
    b.basic(b.agg(post, "Country"), "IdentificationCode", country)
    vat_id = party.tax_id if vat_ids and party.tax_id and _VAT_ID.match(party.tax_id) else None
    if vat_id is not None or (seller and vat_ids and party.tax_id):
        scheme = b.agg(p, "PartyTaxScheme")
        b.basic(scheme, "CompanyID", party.tax_id or "")
        b.basic(b.agg(scheme, "TaxScheme"), "ID", "VAT" if vat_id is not None else "TAX")  # BT-31 or BT-32
    legal = b.agg(p, "PartyLegalEntity")
    b.basic(legal, "RegistrationName", party.name)
    if party.tax_id and vat_id is None:
        b.basic(legal, "CompanyID", party.tax_id)  # BT-30 / BT-47: a tax id that is not a VAT identifier
    if party.email:
        b.basic(b.agg(p, "Contact"), "ElectronicMail", party.email)


def _check_tax_ids(doc: InvoiceDoc, groups: list[_Group]) -> None:
    categories = {g.category for g in groups}
    if doc.issuer is not None and not doc.issuer.tax_id:
        raise ValueError(
            "issuer.tax_id: an EN 16931 invoice identifies the seller by its VAT identifier or legal "
            "registration (BR-CO-26; BR-S-2, BR-AE-2 for standard-rated and reverse-charge lines)"
        )
    if "O" in categories and len(categories) > 1:
        raise ValueError(
            f"lines: an invoice with lines not subject to VAT (O) has no other VAT category (BR-O-11); "
            f"this one has {', '.join(sorted(categories))}: issue them on separate invoices"
        )
    buyer_vat = doc.buyer.tax_id if doc.buyer is not None else None
    if "AE" in categories and not buyer_vat:
        raise ValueError("buyer.tax_id: a reverse-charge invoice needs the buyer's VAT identifier (BR-AE-2)")


def _tax_category(b: _Builder, parent: etree._Element, name: str, g: _Group, reasons: bool) -> None:
    cat = b.agg(parent, name)
    b.basic(cat, "ID", g.category)
    if g.category != "O":  # BR-O-5, BR-O-9: no rate for "not subject to VAT"
        b.basic(cat, "Percent", _percent(g.rate))
    if reasons and g.category in ("AE", "E", "O"):  # BR-AE-10, BR-E-10, BR-O-10
        if g.category in _VATEX:
            b.basic(cat, "TaxExemptionReasonCode", _VATEX[g.category])
        b.basic(cat, "TaxExemptionReason", "; ".join(g.reasons) or _DEFAULT_REASON[g.category])
    b.basic(b.agg(cat, "TaxScheme"), "ID", "VAT")


def _allowance(b: _Builder, root: etree._Element, reason: str, amount: Decimal, g: _Group,
               base: Decimal | None = None, percentage: Decimal | None = None) -> None:  # fmt: skip
    ac = b.agg(root, "AllowanceCharge")
    b.basic(ac, "ChargeIndicator", "false")
    b.basic(ac, "AllowanceChargeReason", reason)
    if percentage is not None and base is not None:
        b.basic(ac, "MultiplierFactorNumeric", _percent(percentage))
    b.amount(ac, "Amount", amount)
    if percentage is not None and base is not None:
        b.amount(ac, "BaseAmount", base)
    _tax_category(b, ac, "TaxCategory", g, reasons=False)


def _allowances(b: _Builder, root: etree._Element, doc: InvoiceDoc, groups: list[_Group]) -> None:
    if len(groups) == 1:
        for d in doc.discounts:
            base, pct = _percentage_base(doc, d)
            _allowance(b, root, _reason(d), d.amount, groups[0], base, pct)
        return
    reason = "; ".join(_reason(d) for d in doc.discounts)
    for g in groups:
        if g.discount:
            _allowance(b, root, reason, g.discount, g)


def _reason(d: Discount) -> str:
    return f"{d.code}: {d.description}" if d.description else d.code


def _percentage_base(doc: InvoiceDoc, d: Discount) -> tuple[Decimal | None, Decimal | None]:
    """(base, percentage) when a percentage discount is exactly its percentage of the subtotal, rounded."""
    if d.kind != "percentage" or d.percentage is None:
        return None, None
    if round_money(EXACT.multiply(doc.subtotal, d.percentage), doc.currency) != d.amount:
        return None, None
    return doc.subtotal, d.percentage


def _local_days(start: datetime, end: datetime, tz: ZoneInfo) -> tuple[date, date]:
    """[start, end) instants as the first and last local day (the end instant is exclusive)."""
    return start.astimezone(tz).date(), (end.astimezone(tz) - timedelta(microseconds=1)).date()


def _period(b: _Builder, parent: etree._Element, start: datetime, end: datetime, tz: ZoneInfo) -> None:
    first, last = _local_days(start, end, tz)
    period = b.agg(parent, "InvoicePeriod")
    b.basic(period, "StartDate", first.isoformat())
    b.basic(period, "EndDate", last.isoformat())


def _price(line: InvoiceLine, currency: str) -> tuple[Decimal, Decimal, Decimal | None]:
    """(invoiced quantity, net price >= 0, base quantity or None) with quantity x price / base = amount."""
    quantity, amount = line.quantity, line.amount
    if quantity == 0:
        quantity = Decimal(1) if amount >= 0 else Decimal(-1)  # a charge without a quantity counts one
    if (amount < 0) != (quantity < 0):
        quantity = -quantity  # the sign is carried by the quantity: the price is never negative (BR-27)
    price = line.unit_price
    if price is not None and price >= 0 and round_money(EXACT.multiply(quantity, price), currency) == amount:
        return quantity, price, None
    return quantity, abs(amount), abs(quantity)


def _line(b: _Builder, root: etree._Element, doc: InvoiceDoc, line: InvoiceLine, g: _Group, tz: ZoneInfo) -> None:
    el = b.agg(root, "InvoiceLine")
    b.basic(el, "ID", str(line.line_no))
    quantity, price, base = _price(line, doc.currency)
    code = unit_code(line.unit)
    b.basic(el, "InvoicedQuantity", _text(quantity), unitCode=code)
    b.amount(el, "LineExtensionAmount", line.amount)
    if line.start is not None and line.end is not None:
        _period(b, el, line.start, line.end, tz)
    item = b.agg(el, "Item")
    name = line.description or line.code
    if line.applies_to:
        name = f"{name} ({line.applies_to})"
    b.basic(item, "Name", name)
    b.basic(b.agg(item, "SellersItemIdentification"), "ID", line.code)
    _tax_category(b, item, "ClassifiedTaxCategory", g, reasons=False)
    if line.unit and code == ONE and line.unit.strip().lower() not in ("one", "unit", "units"):
        prop = b.agg(item, "AdditionalItemProperty")
        b.basic(prop, "Name", "unit")
        b.basic(prop, "Value", line.unit)
    p = b.agg(el, "Price")
    b.amount(p, "PriceAmount", price)
    if base is not None:
        b.basic(p, "BaseQuantity", _text(base), unitCode=code)


# ------------------------------------------------------------------------------------------------- main


def to_ubl(doc: InvoiceDoc) -> bytes:
    """The finalized invoice `doc` as UBL 2.1 Invoice XML (EN 16931 core), UTF-8 with an XML declaration.

    The document is validated first (`schemas.invoice.validate`); ValueError naming the field when it does not
    add up or cannot be an EN 16931 invoice (module docstring)."""
    validate(doc)
    if doc.status == "draft" or not doc.number:
        raise ValueError(f"number: the invoice has no number yet (status {doc.status}); an e-invoice is issued "
                         "once it is finalized (BR-2)")  # fmt: skip
    if doc.issue_date is None:
        raise ValueError("issue_date: an EN 16931 invoice has an issue date (BR-3)")
    if not doc.lines:
        raise ValueError("lines: an EN 16931 invoice has at least one line (BR-16)")
    tz = ZoneInfo(doc.timezone)
    groups = _groups(doc)
    _check_tax_ids(doc, groups)
    group_of = {id(x): g for g in groups for x in g.lines}
    b = _Builder(doc.currency)

    root = etree.Element(f"{{{INVOICE_NS}}}Invoice", nsmap=_NSMAP)
    b.basic(root, "CustomizationID", CUSTOMIZATION_ID)
    b.basic(root, "ID", doc.number)
    b.basic(root, "IssueDate", doc.issue_date.isoformat())
    if doc.due_date is not None:
        b.basic(root, "DueDate", doc.due_date.isoformat())
    b.basic(root, "InvoiceTypeCode", COMMERCIAL_INVOICE)
    for note in (*doc.legal_mentions, *doc.notes):
        b.basic(root, "Note", note)
    b.basic(root, "DocumentCurrencyCode", doc.currency)
    b.basic(root, "BuyerReference", doc.customer)
    _period(b, root, doc.period_start, doc.period_end, tz)
    vat_ids = groups[0].category != "O"  # BR-O-2: no VAT identifiers on an invoice not subject to VAT
    _party(b, b.agg(root, "AccountingSupplierParty"), doc.issuer, "issuer", seller=True, vat_ids=vat_ids)
    _party(b, b.agg(root, "AccountingCustomerParty"), doc.buyer, "buyer", seller=False, vat_ids=vat_ids)
    if doc.discount_total:
        _allowances(b, root, doc, groups)

    tax_total = b.agg(root, "TaxTotal")
    b.amount(tax_total, "TaxAmount", doc.tax_total)
    for g in groups:
        sub = b.agg(tax_total, "TaxSubtotal")
        b.amount(sub, "TaxableAmount", g.taxable)
        b.amount(sub, "TaxAmount", g.tax)
        _tax_category(b, sub, "TaxCategory", g, reasons=True)

    totals = b.agg(root, "LegalMonetaryTotal")
    b.amount(totals, "LineExtensionAmount", doc.subtotal)
    b.amount(totals, "TaxExclusiveAmount", EXACT.subtract(doc.subtotal, doc.discount_total))
    b.amount(totals, "TaxInclusiveAmount", doc.total)
    if doc.discount_total:
        b.amount(totals, "AllowanceTotalAmount", doc.discount_total)
    if doc.credits_applied:
        b.amount(totals, "PrepaidAmount", doc.credits_applied)
    b.amount(totals, "PayableAmount", doc.amount_due)

    for line in doc.lines:
        _line(b, root, doc, line, group_of[id(line)], tz)
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True, pretty_print=True)


# ------------------------------------------------------------------------------------------- credit notes


@dataclass(frozen=True)
class CreditSplit:
    """A credit note's lines split at its invoice's one VAT category and rate (`split_credit`)."""

    category: str
    rate: Decimal
    reasons: tuple[str, ...]  # the group's exemption reasons (the invoice's legal mentions for it)
    lines: tuple[tuple[str, Decimal, Decimal], ...]  # (description, amount, net)

    @property
    def total(self) -> Decimal:
        return _sum(x[1] for x in self.lines)

    @property
    def net(self) -> Decimal:
        return _sum(x[2] for x in self.lines)

    @property
    def tax(self) -> Decimal:
        return EXACT.subtract(self.total, self.net)


def split_credit(invoice: InvoiceDoc, lines: Sequence[tuple[str, Decimal]]) -> CreditSplit:
    """A credit note's lines (description, amount, tax included) split into net and tax at the invoice's one VAT
    category and rate: net = amount / (1 + rate) rounded half up to the minor unit, tax = amount - net (a 0 %
    category: all net). The one rule of the split, for the e-invoice (`credit_note_to_ubl`) and the printed
    credit note (documents/credit_note.py). ValueError naming the field: no line, a line that is not a positive
    amount of the currency, or an invoice with several VAT groups (`invoice.taxes`: a line of ours does not say
    which group it credits)."""
    if not lines:
        raise ValueError("lines: a credit note has at least one line (BR-16)")
    groups = _groups(invoice)
    if len(groups) != 1:
        names = ", ".join(f"{g.category} {_percent(g.rate)} %" for g in groups)
        raise ValueError(f"invoice.taxes: the invoice has several VAT groups ({names}); a credit note line does not "
                         "say which one it credits")  # fmt: skip
    src = groups[0]
    split: list[tuple[str, Decimal, Decimal]] = []
    for i, (description, amount) in enumerate(lines):
        if amount <= 0 or round_money(amount, invoice.currency) != amount:
            raise ValueError(f"lines[{i}].amount: {_text(amount)} is not a positive amount in {invoice.currency}")
        net = round_money(_SPLIT.divide(amount, _SPLIT.add(Decimal(1), src.rate)), invoice.currency)
        split.append((description, amount, net))
    return CreditSplit(src.category, src.rate, tuple(src.reasons), tuple(split))


def credit_note_to_ubl(
    invoice: InvoiceDoc, *, number: str, issue_date: date, reason: str, lines: Sequence[tuple[str, Decimal]]
) -> bytes:
    """A credit note (entities/credit_notes.py: `number`, `issue_date`, `reason`, `lines` of (description, amount))
    against the finalized `invoice`, as a UBL 2.1 CreditNote following EN 16931 (type 381, the invoice as billing
    reference BT-25, its seller and buyer).

    Our credit notes credit what the invoice billed, tax included, and carry no tax split of their own; the
    e-invoice needs one (BG-23): `split_credit` splits each line at the invoice's one VAT category and rate. The
    tax is then within one minor unit of net x rate, the tolerance of BR-CO-17. An invoice with several VAT
    groups is refused (`invoice.taxes`)."""
    validate(invoice)
    if invoice.status == "draft" or not invoice.number or invoice.issue_date is None:
        raise ValueError("invoice: a credit note is issued against a finalized invoice with a number and issue date")
    credit = split_credit(invoice, lines)
    group = _Group(credit.category, credit.rate, reasons=list(credit.reasons))
    _check_tax_ids(invoice, [group])
    split, total, net_total = credit.lines, credit.total, credit.net
    b = _Builder(invoice.currency)
    tz = ZoneInfo(invoice.timezone)

    root = etree.Element(f"{{{CREDIT_NOTE_NS}}}CreditNote", nsmap=_CN_NSMAP)
    b.basic(root, "CustomizationID", CUSTOMIZATION_ID)
    b.basic(root, "ID", number)
    b.basic(root, "IssueDate", issue_date.isoformat())
    b.basic(root, "CreditNoteTypeCode", CREDIT_NOTE)
    b.basic(root, "Note", reason)
    for note in invoice.legal_mentions:
        b.basic(root, "Note", note)
    b.basic(root, "DocumentCurrencyCode", invoice.currency)
    b.basic(root, "BuyerReference", invoice.customer)
    _period(b, root, invoice.period_start, invoice.period_end, tz)
    ref = b.agg(b.agg(root, "BillingReference"), "InvoiceDocumentReference")
    b.basic(ref, "ID", invoice.number)
    b.basic(ref, "IssueDate", invoice.issue_date.isoformat())
    vat_ids = credit.category != "O"
    _party(b, b.agg(root, "AccountingSupplierParty"), invoice.issuer, "invoice.issuer", seller=True, vat_ids=vat_ids)
    _party(b, b.agg(root, "AccountingCustomerParty"), invoice.buyer, "invoice.buyer", seller=False, vat_ids=vat_ids)
    tax_total = b.agg(root, "TaxTotal")
    b.amount(tax_total, "TaxAmount", EXACT.subtract(total, net_total))
    sub = b.agg(tax_total, "TaxSubtotal")
    b.amount(sub, "TaxableAmount", net_total)
    b.amount(sub, "TaxAmount", EXACT.subtract(total, net_total))
    _tax_category(b, sub, "TaxCategory", group, reasons=True)
    totals = b.agg(root, "LegalMonetaryTotal")
    b.amount(totals, "LineExtensionAmount", net_total)
    b.amount(totals, "TaxExclusiveAmount", net_total)
    b.amount(totals, "TaxInclusiveAmount", total)
    b.amount(totals, "PayableAmount", total)
    for i, (description, _amount, net) in enumerate(split):
        el = b.agg(root, "CreditNoteLine")
        b.basic(el, "ID", str(i + 1))
        b.basic(el, "CreditedQuantity", "1", unitCode=ONE)
        b.amount(el, "LineExtensionAmount", net)
        item = b.agg(el, "Item")
        b.basic(item, "Name", description)
        _tax_category(b, item, "ClassifiedTaxCategory", group, reasons=False)
        b.amount(b.agg(el, "Price"), "PriceAmount", net)
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True, pretty_print=True)
