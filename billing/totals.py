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
from meterstream.billing.discounts import CouponUse, DiscountApplied, discount_units
from meterstream.billing.taxes import Buyer, Category, Seller, TaxDecision, TaxTable, TaxTotal, determine, tax_in_units

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
    amounts = [to_units(line.amount, currency, f"lines[{i}].amount") for i, line in enumerate(lines)]
    applied, discount_of = discount_units(lines, amounts, coupons, currency)
    decisions: dict[str | None, TaxDecision] = {}
    line_decisions: list[TaxDecision] = []
    for line in lines:
        decision = decisions.get(line.tax_code)
        if decision is None:
            decision = decisions[line.tax_code] = determine(seller, buyer, line.tax_code, table)
        line_decisions.append(decision)
    keys = [line.key for line in lines]
    taxable = [units - discount_of[key] for units, key in zip(amounts, keys, strict=True)]
    tax_of, taxes = tax_in_units(keys, taxable, line_decisions, currency)
    out_lines = [
        LineTotals(
            key=line.key,
            amount=from_units(units, currency),
            discount_amount=from_units(discount_of[line.key], currency),
            taxable_amount=from_units(taxable_units, currency),
            tax_code=line.tax_code,
            tax_rate=decision.rate,
            tax_amount=from_units(tax_units, currency),
            tax_category=decision.category,
        )
        for line, units, taxable_units, tax_units, decision in zip(
            lines, amounts, taxable, tax_of, line_decisions, strict=True
        )
    ]
    subtotal = sum(amounts)
    discount_total = sum(discount_of.values())
    tax_total = sum(tax_of)
    mentions: list[str] = []
    for total in taxes:
        if total.mention and total.mention not in mentions:
            mentions.append(total.mention)
    return InvoiceTotals(
        currency=currency,
        lines=out_lines,
        discounts=applied,
        taxes=taxes,
        subtotal=from_units(subtotal, currency),
        discount_total=from_units(discount_total, currency),
        tax_total=from_units(tax_total, currency),
        total=from_units(subtotal - discount_total + tax_total, currency),
        legal_mentions=mentions,
    )
