"""The close's invoice as the version 2 document (schemas/invoice.py): parties, dates, per-user section, taxes,
totals. Pure: no I/O, no clock (docs/billing.md, "What the close writes").

`issue_draft(v1, issuing, customer, subjects)` takes the document the close computed (the version 1 dict of
`document.py` / `subscription_invoice.py`: lines and amounts, unchanged) and returns the validated draft
`InvoiceDoc` that `records.py` finalizes (number, status `finalized`):

- issuer: from configuration (`Issuing.from_settings`: the `METERSTREAM_ISSUER_*` settings);
- buyer: the customer's billing details (`buyer_from_customer`); a customer the entity store does not know (a
  catalog-file customer) gets a minimal buyer, its external id as name, and no tax (no country to decide it);
- issue date: the local day on which the closed period ends, in the time zone the document's period is
  counted in (the catalog file's periods are UTC months: the 1st of the next month; a subscription period
  ending 2026-11-15T00:00 Europe/Paris: 2026-11-15), unless the close names one (`--issue-date`); due date =
  issue date + the customer's `payment_terms_days` (0 without a customer record);
- per-user section: usage and adjustment lines whose subjects' quantities add up to the line (catalog-file
  lines: the period's usage of the meter; subscription lines: the usage of the meter in the line's [start,
  end); telecom lines: their records' usage on the line, `subject_quantities`; late usage: each subject's usage
  of the line now minus its shares billed, `adjustments.late_subjects`) get fair shares of the line amount
  (`billing.allocation.subject_shares`, largest remainder). Usage without a subject is the share
  `(no subject)`; a document none of whose lines names a subject has no per-user section; fees have none;
- tax and totals: `billing.totals.invoice_totals` with the issuer as seller and the customer as buyer (with its
  explicit taxes, `Issuing.taxes`: docs/taxes.md) and the customer's coupon uses (`Issuing.coupons`, loaded once
  per close from the store: entities/coupons.py); each active coupon is one entry of `discounts`, named by its
  code (also when it took 0.00: the store derives the coupons' use from these entries), and
  total = subtotal - discounts + tax, to the cent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from meterstream.billing.allocation import from_units, subject_shares, to_units
from meterstream.billing.discounts import CouponUse, DiscountApplied, apply_discounts
from meterstream.billing.taxes import Buyer, ExplicitTax, ExplicitTaxes, Seller, TaxTable, buyer_of
from meterstream.billing.totals import TotalsLine, invoice_totals
from meterstream.entities.numbering import INVOICE_SERIES
from meterstream.invoice_emitter.document import with_lines
from meterstream.invoice_emitter.subjects import subject_quantities_of
from meterstream.rating.money import EXACT
from meterstream.schemas.entities import CustomerDoc
from meterstream.schemas.invoice import (
    Address,
    Discount,
    InvoiceDoc,
    InvoiceLine,
    Party,
    SubjectShare,
    TaxTotal,
    buyer_from_customer,
    from_v1,
    validate,
)
from meterstream.schemas.settings import Settings

__all__ = ["NO_COUNTRY_NOTE", "NO_SUBJECT", "Issuing", "issue_date_of", "issue_draft", "load_tax_table"]

NO_COUNTRY_NOTE = "No tax calculated: the buyer has no country in its billing details."
NO_SUBJECT = "(no subject)"  # usage without a subject in a line's per-user section


@dataclass(frozen=True)
class Issuing:
    """Who issues the close's invoices and how: the issuer block, the seller as tax sees it, the number prefix
    and series, the tax table, and an issue date that overrides the rule (None: the rule). `coupons`: each
    customer's coupon uses ((tenant, customer) -> uses); `taxes`: the explicit taxes; None: not loaded yet
    (`invoice_emitter.store_terms.with_store_terms` loads both from the store once per close)."""

    issuer: Party
    seller: Seller
    prefix: str
    table: TaxTable = field(default_factory=TaxTable)
    series: str = INVOICE_SERIES
    issue_date: date | None = None
    coupons: Mapping[tuple[str, str], Sequence[CouponUse]] | None = None
    taxes: ExplicitTaxes | None = None
    # pending charges (late fees, entities/dunning.py): (tenant, customer) -> [(currency, version 1 line)]
    charges: Mapping[tuple[str, str], Sequence[tuple[str, dict[str, Any]]]] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, issue_date: date | None = None) -> Issuing:
        """From the `METERSTREAM_ISSUER_*` settings and `METERSTREAM_TAX_TABLE_FILE` (defaults: the demo issuer,
        Meterstream Demo GmbH in Germany, and the EU standard VAT rates)."""
        address = Address(
            line1=settings.issuer_address_line1,
            line2=settings.issuer_address_line2,
            city=settings.issuer_city,
            postal_code=settings.issuer_postal_code,
            state=settings.issuer_state,
            country=settings.issuer_country,
        )
        issuer = Party(name=settings.issuer_name, address=address, tax_id=settings.issuer_tax_id,
                       email=settings.issuer_email)  # fmt: skip
        seller = Seller(settings.issuer_country, vat_registered=settings.issuer_vat_registered)
        table = load_tax_table(settings.tax_table_file) if settings.tax_table_file else TaxTable()
        return cls(issuer, seller, settings.issuer_prefix, table, issue_date=issue_date)

    @classmethod
    def default(cls) -> Issuing:
        """The demo issuer with the default tax table (the settings' defaults, not the environment)."""
        return cls.from_settings(Settings.model_construct())


def load_tax_table(path: Path) -> TaxTable:
    """A tax table from YAML ({rates: {US: {standard: "0.05"}}, ...}); unquoted decimals keep their text."""
    import yaml

    class _Loader(yaml.SafeLoader):  # unquoted 0.0725 stays the decimal 0.0725, never a float
        pass

    _Loader.add_constructor(
        "tag:yaml.org,2002:float", lambda loader, node: Decimal(loader.construct_scalar(node).replace("_", ""))
    )
    try:
        config = yaml.load(Path(path).read_text(), Loader=_Loader)  # a SafeLoader subclass
    except OSError as exc:
        raise ValueError(f"tax_table_file: cannot read {path}: {exc.strerror}") from None
    if not isinstance(config, dict):
        raise ValueError(f"tax_table_file: {path} is not a mapping (rates: ...)")
    return TaxTable.from_config(config)


@lru_cache(maxsize=4096)  # a close asks it of each customer, for one or a few (period end, time zone) pairs
def issue_date_of(period_end: datetime, timezone: str) -> date:
    """The issue date the rule gives: the local day (in `timezone`) on which the period ends (its end is the
    first instant after it, so this is the day after the period's last day)."""
    return period_end.astimezone(ZoneInfo(timezone)).date()


def _buyer(
    tenant: str, customer_id: str, customer: CustomerDoc | None, taxes: Sequence[ExplicitTax] = ()
) -> tuple[Party, Buyer | None]:
    if customer is None:
        return Party(name=customer_id), (Buyer(None, taxes=tuple(taxes)) if taxes else None)
    party = buyer_from_customer(customer)
    country = customer.country or (customer.address.country if customer.address else None)
    return party, (buyer_of(customer, taxes=taxes) if country or taxes else None)


_SHARED = frozenset(("usage", "adjustment"))  # the line kinds with a per-user section (fees have none)


def _shares(line: InvoiceLine, subjects: Mapping[str, Decimal] | None, currency: str) -> list[SubjectShare]:
    """The line's per-user section, or none when the subjects do not account for exactly its quantity."""
    if not subjects or line.kind not in _SHARED or any(q < 0 for q in subjects.values()):
        return []
    total = Decimal(0)
    for q in subjects.values():
        total = EXACT.add(total, q)
    if total != line.quantity:
        return []
    named = {(s or NO_SUBJECT): q for s, q in subjects.items()}
    return [SubjectShare(subject=s.subject, quantity=s.quantity, amount=s.amount)
            for s in subject_shares(line.amount, named, currency)]  # fmt: skip


def _line_quantities(
    v1_lines: list[dict[str, Any]],
    lines: list[InvoiceLine],
    subjects: Mapping[str, Mapping[str, Decimal]] | None,
    line_subjects: Mapping[str, Mapping[str, Decimal]] | None,
) -> list[Mapping[str, Decimal] | None] | None:
    """Each usage or adjustment line's quantity per subject (`subjects.subject_quantities_of`: its own, else
    `line_subjects` by its line key, else `subjects` by its meter). None when no line has a named subject: a
    customer whose usage names no subject gets no per-user section at all."""
    out: list[Mapping[str, Decimal] | None] = []
    named = False
    for raw, line in zip(v1_lines, lines, strict=True):
        found: Mapping[str, Decimal] | None = None
        if line.kind in _SHARED:
            found = subject_quantities_of(raw, subjects, line_subjects)
            named = named or (found is not None and any(found))
        out.append(found)
    return out if named else None


def _discounts_only(
    lines: list[InvoiceLine], uses: Sequence[CouponUse], doc: InvoiceDoc, zero: Decimal
) -> tuple[list[InvoiceLine], dict[str, Any]]:
    """The coupons of an invoice without tax: each line's share, the `discounts`, the totals."""
    result = apply_discounts([TotalsLine(str(line.line_no), line.code, line.amount) for line in lines], uses,
                             doc.currency)  # fmt: skip
    lines = [msgspec.structs.replace(line, discount_amount=result.line_discounts[str(line.line_no)]) for line in lines]
    total = from_units(to_units(doc.subtotal, doc.currency) - to_units(result.discount_total, doc.currency),
                       doc.currency)  # fmt: skip
    return lines, {"discounts": [_discount(d) for d in result.discounts], "discount_total": result.discount_total,
                   "tax_total": zero, "total": total,
                   "amount_due": from_units(to_units(total, doc.currency) - to_units(doc.credits_applied, doc.currency),
                                            doc.currency)}  # fmt: skip


def _discount(d: DiscountApplied) -> Discount:
    return Discount(code=d.code, description=d.description, kind=d.kind, percentage=d.percentage, amount=d.amount,
                    periods_remaining=d.periods_remaining)  # fmt: skip


def issue_draft(
    v1: dict[str, Any],
    issuing: Issuing,
    customer: CustomerDoc | None = None,
    subjects: Mapping[str, Mapping[str, Decimal]] | None = None,
    line_subjects: Mapping[str, Mapping[str, Decimal]] | None = None,
) -> InvoiceDoc:
    """The validated draft version 2 document of the close's document `v1` (rules: module docstring).
    `subjects`: meter -> subject -> quantity of the catalog-file usage of the period (lines without a line
    key); `line_subjects`: line key -> subject -> quantity (subscription usage lines). ValueError naming the
    field when it cannot be issued (an invalid buyer VAT number, a tax code without a rate, ...)."""
    tenant, customer_id = v1["tenant"], v1["customer"]
    charges = [line for cur, line in (issuing.charges or {}).get((tenant, customer_id), ()) if cur == v1["currency"]]
    if charges:  # late fees waiting for this customer's next invoice in their currency: lines of this one
        v1 = with_lines(v1, charges)
    explicit = issuing.taxes.of(tenant, customer_id) if issuing.taxes is not None else ()
    buyer, tax_buyer = _buyer(tenant, customer_id, customer, explicit)
    doc = from_v1(v1, issuing.issuer, buyer)
    # the file path's period is a UTC month; a subscription document's periods are the customer's local ones
    timezone = customer.timezone if customer is not None and v1.get("period_start") else "UTC"
    issued = issuing.issue_date or issue_date_of(doc.period_end, timezone)
    terms = customer.payment_terms_days if customer is not None else 0
    currency = doc.currency
    lines = doc.lines
    quantities = _line_quantities(v1["lines"], lines, subjects, line_subjects)
    if quantities is not None:
        lines = [msgspec.structs.replace(line, subjects=_shares(line, q, currency)) if q else line
                 for line, q in zip(lines, quantities, strict=True)]  # fmt: skip
    notes = list(doc.notes)
    extra: dict[str, Any] = {}
    totals = None
    uses = (issuing.coupons or {}).get((tenant, customer_id), ())
    if tax_buyer is None:
        notes.append(NO_COUNTRY_NOTE)
        zero = from_units(0, currency)  # 0.00 in the currency's minor digits, like every other amount
        extra = {"discount_total": zero, "tax_total": zero}
        if uses:  # no tax to decide, but the customer's coupons still apply
            lines, extra = _discounts_only(lines, uses, doc, zero)
    else:
        totals = invoice_totals(
            [TotalsLine(str(line.line_no), line.code, line.amount, line.tax_code) for line in lines],
            currency, seller=issuing.seller, buyer=tax_buyer, table=issuing.table,
            coupons=uses,
        )  # fmt: skip
        lines = [
            msgspec.structs.replace(
                line, discount_amount=t.discount_amount, tax_code=t.tax_code, tax_rate=t.tax_rate,
                tax_amount=t.tax_amount, tax_category=t.tax_category,
            )
            for line, t in zip(lines, totals.lines, strict=True)
        ]  # fmt: skip
    fields: dict[str, Any] = {
        "status": "draft",
        "timezone": timezone,
        "issue_date": issued,
        "due_date": issued + timedelta(days=terms),
        "lines": lines,
        "notes": notes,
        **extra,
    }
    if totals is not None:
        fields.update(
            taxes=[
                TaxTotal(rate=t.rate, taxable_amount=t.taxable_amount, tax_amount=t.tax_amount, tax_code=t.tax_code,
                         category=t.category, reverse_charge=t.reverse_charge, mention=t.mention)
                for t in totals.taxes
            ],
            discounts=[_discount(d) for d in totals.discounts],
            subtotal=totals.subtotal,
            discount_total=totals.discount_total,
            tax_total=totals.tax_total,
            total=totals.total,
            amount_due=totals.total,
            legal_mentions=totals.legal_mentions,
        )  # fmt: skip
    return validate(msgspec.structs.replace(doc, **fields))
