"""The totals of one invoice document: lines -> discounts -> tax per line -> totals (docs/taxes.md). Pure.

`invoice_totals(lines, currency, seller=..., buyer=..., table=..., coupons=...)`:
1. lines: usage and fee lines with amounts already rounded to the currency's minor unit; subtotal = their sum;
2. discounts (`billing.discounts`): each active coupon's amount, allocated back to the lines it applies to
   pro rata by largest remainder, so each line has a discounted, taxable amount;
3. tax per line (`billing.taxes`): the line's tax decision (seller, buyer, the line's tax code), then the
   tax of each rate group rounded once and shared among its lines by largest remainder;
4. totals: discount_total, tax_total (= sum of the lines' tax = sum of the breakdown), and
   total = subtotal - discount_total + tax_total, exactly, in minor units.
Field names are those of the invoice document (schemas/invoice.py), so the close copies them one to one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from meterstream.billing.allocation import from_units, to_units
from meterstream.billing.discounts import CouponUse, DiscountApplied, apply_discounts
from meterstream.billing.taxes import Buyer, Category, Seller, TaxDecision, TaxTable, TaxTotal, determine, tax_totals

__all__ = ["InvoiceTotals", "LineTotals", "TotalsLine", "invoice_totals"]


@dataclass(frozen=True, slots=True)
class TotalsLine:
    """An invoice line as the totals need it: a unique key (e.g. its line number), the code coupons name
    (meter or charge code), its amount rounded to the minor unit (negative for credits), its tax code."""

    key: str
    code: str
    amount: Decimal
    tax_code: str | None = None


@dataclass(frozen=True, slots=True)
class LineTotals:
    """A line's figures on the document: amount, its part of the discounts, and its tax."""

    key: str
    amount: Decimal
    discount_amount: Decimal
    taxable_amount: Decimal  # amount - discount_amount
    tax_code: str | None
    tax_rate: Decimal
    tax_amount: Decimal
    tax_category: Category


@dataclass(frozen=True, slots=True)
class InvoiceTotals:
    currency: str
    lines: list[LineTotals]
    discounts: list[DiscountApplied]
    taxes: list[TaxTotal]
    subtotal: Decimal
    discount_total: Decimal
    tax_total: Decimal
    total: Decimal  # subtotal - discount_total + tax_total
    legal_mentions: list[str] = field(default_factory=list)  # the tax breakdown's mentions, once each


def invoice_totals(
    lines: Sequence[TotalsLine],
    currency: str,
    *,
    seller: Seller,
    buyer: Buyer,
    table: TaxTable,
    coupons: Sequence[CouponUse] = (),
) -> InvoiceTotals:
    """The document totals of one invoice (steps: module docstring). ValueError naming the field for a
    duplicate line key, an amount that is not whole minor units, a coupon in another currency, a tax code
    the buyer's jurisdiction has no rate for, an invalid buyer VAT number."""
    subtotal = sum((to_units(line.amount, currency, f"lines[{i}].amount") for i, line in enumerate(lines)), 0)
    discounted = apply_discounts(lines, coupons, currency)
    decisions: dict[str | None, TaxDecision] = {}
    taxed: list[tuple[str, Decimal, TaxDecision]] = []
    for line in lines:
        decision = decisions.get(line.tax_code)
        if decision is None:
            decision = decisions[line.tax_code] = determine(seller, buyer, line.tax_code, table)
        taxable = from_units(
            to_units(line.amount, currency) - to_units(discounted.line_discounts[line.key], currency), currency
        )
        taxed.append((line.key, taxable, decision))
    line_taxes, taxes = tax_totals(taxed, currency)
    out_lines = [
        LineTotals(
            key=line.key,
            amount=from_units(to_units(line.amount, currency), currency),
            discount_amount=discounted.line_discounts[line.key],
            taxable_amount=tax.taxable_amount,
            tax_code=line.tax_code,
            tax_rate=tax.tax_rate,
            tax_amount=tax.tax_amount,
            tax_category=decision.category,
        )
        for line, tax, (_key, _taxable, decision) in zip(lines, line_taxes, taxed, strict=True)
    ]
    discount_units = to_units(discounted.discount_total, currency)
    tax_units = sum((to_units(t.tax_amount, currency) for t in line_taxes), 0)
    mentions: list[str] = []
    for total in taxes:
        if total.mention and total.mention not in mentions:
            mentions.append(total.mention)
    return InvoiceTotals(
        currency=currency,
        lines=out_lines,
        discounts=discounted.discounts,
        taxes=taxes,
        subtotal=from_units(subtotal, currency),
        discount_total=from_units(discount_units, currency),
        tax_total=from_units(tax_units, currency),
        total=from_units(subtotal - discount_units + tax_units, currency),
        legal_mentions=mentions,
    )
