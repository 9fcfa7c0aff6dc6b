"""Invoice documents from period totals, priced by the one engine (`rating.quote`). Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from aggregation.usage_query import MeterUsage
from rating import quote, round_money
from rating.catalog import Plan
from rating.lines import QuoteLine

DOCUMENT_VERSION = 1
_ZERO = Decimal(0)


def decimal_text(value: Decimal) -> str:
    """Plain decimal text without the storage scale's trailing zeros (1250.750000 -> 1250.75)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def invoice_id(tenant: str, customer: str, period: str) -> str:
    """Stable id: a re-run of the same close names the same invoice (numbering comes with the lifecycle)."""
    digest = hashlib.sha256(f"{tenant}\x1f{customer}\x1f{period}".encode()).hexdigest()[:16]
    return f"INV-{period.replace('-', '')}-{digest}"


class PricedMeter:
    """What a meter line shows for one (price, quantity): the quote's figures as document text."""

    __slots__ = ("amount", "amount_text", "breakdown", "precise", "precise_text", "quantity_text")

    def __init__(self, price: Any, quantity: Decimal) -> None:
        q = quote(price, quantity)
        self.precise: Decimal = q.precise_total
        self.amount: Decimal = q.total  # rounded once to the currency's minor unit
        self.quantity_text = decimal_text(quantity)
        self.precise_text = decimal_text(q.precise_total)
        self.amount_text = format(q.total, "f")
        self.breakdown = [_quote_line(line) for line in q.lines]


class MeterPricer:
    """Meter lines for many invoices (one close): each distinct (price, quantity) is quoted once.

    A quote is a pure function of the price and the quantity, so a repeat reuses the first result,
    breakdown included (shared by the documents that show it; documents are not modified once built).
    The key is the quantity's exact text, not its value: the breakdown texts show its digits. At most
    `limit` distinct pairs are kept; beyond that, new pairs are quoted every time.
    """

    __slots__ = ("_cache", "_limit", "_prices")

    def __init__(self, limit: int = 250_000) -> None:
        self._cache: dict[tuple[int, str], PricedMeter] = {}
        self._prices: dict[int, Any] = {}  # keeps every keyed price alive, so its id() is not reused
        self._limit = limit

    def __call__(self, price: Any, quantity: Decimal) -> PricedMeter:
        key = (id(price), str(quantity))
        priced = self._cache.get(key)
        if priced is None:
            priced = PricedMeter(price, quantity)
            if len(self._cache) < self._limit:
                self._prices[key[0]] = price
                self._cache[key] = priced
        return priced


def build_invoice(
    tenant: str,
    customer: str,
    period: str,
    plan: Plan,
    usage: Iterable[MeterUsage],
    extra_lines: list[dict[str, Any]] | None = None,
    pricer: MeterPricer | None = None,
) -> dict[str, Any]:
    """One customer's invoice: a line per priced meter (with its tier breakdown); lines add up to the total.

    Each line is rounded once to the currency's minor unit (half away from zero); the total is the sum
    of the rounded lines, so the document always adds up. `precise_amount` keeps the unrounded figure.
    """
    return invoice_and_differences(tenant, customer, period, plan, usage, extra_lines, pricer)[0]


def invoice_and_differences(
    tenant: str,
    customer: str,
    period: str,
    plan: Plan,
    usage: Iterable[MeterUsage],
    extra_lines: list[dict[str, Any]] | None = None,
    pricer: MeterPricer | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """`build_invoice`, plus the meters whose line's `precise_amount` differs from its `streamed_amount`."""
    price_of = pricer or MeterPricer(limit=0)
    telecom = plan.telecom_meters
    by_meter = {u.meter: u for u in usage if u.meter not in telecom}
    prices = plan.prices
    lines: list[dict[str, Any]] = []
    differ: list[str] = []
    subtotal = _ZERO
    for line in extra_lines or ():  # lines priced elsewhere (telecom re-rating)
        lines.append({"line_no": len(lines) + 1, **{k: v for k, v in line.items() if k != "line_no"}})
        subtotal += Decimal(line["amount"])
    for meter in sorted(prices.keys() | by_meter.keys()):
        u = by_meter.get(meter)
        if meter not in prices:
            raise ValueError(f"plan {plan.id!r} does not price meter {meter!r} of {tenant}/{customer}")
        p = price_of(prices[meter], u.quantity if u else _ZERO)
        if u is None and p.amount == 0:
            continue
        streamed = u.streamed_amount if u else _ZERO
        if p.precise != streamed:
            differ.append(meter)
            streamed_text = decimal_text(streamed) if u else "0"
        else:  # the same value has the same text, except for the sign of a zero
            streamed_text = p.precise_text if streamed else decimal_text(streamed) if u else "0"
        lines.append(
            {
                "line_no": len(lines) + 1,
                "meter": meter,
                "description": meter.replace("_", " "),
                "quantity": p.quantity_text,
                "events": u.events if u else 0,
                "precise_amount": p.precise_text,
                "amount": p.amount_text,
                "streamed_amount": streamed_text,
                "breakdown": p.breakdown,
            }
        )
        subtotal += p.amount
    total = format(round_money(subtotal, plan.currency), "f")
    doc = empty_invoice(tenant, customer, period, plan.id, plan.currency)
    doc["lines"] = lines
    doc["subtotal"] = doc["total"] = total
    return doc, differ


def empty_invoice(tenant: str, customer: str, period: str, plan: str, currency: str) -> dict[str, Any]:
    """An invoice with no lines yet; `with_lines` adds them."""
    return {
        "document_version": DOCUMENT_VERSION,
        "invoice_id": invoice_id(tenant, customer, period),
        "status": "final",
        "tenant": tenant,
        "customer": customer,
        "period": period,
        "plan": plan,
        "currency": currency,
        "lines": [],
        "subtotal": "0",
        "tax": "0",
        "total": "0",
    }


def with_lines(doc: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
    """A copy of `doc` with `lines` appended and numbered; subtotal and total are the sum of the lines."""
    all_lines = list(doc["lines"])
    for line in lines:
        all_lines.append({"line_no": len(all_lines) + 1, **{k: v for k, v in line.items() if k != "line_no"}})
    subtotal = round_money(sum((Decimal(line["amount"]) for line in all_lines), Decimal(0)), doc["currency"])
    return {**doc, "lines": all_lines, "subtotal": format(subtotal, "f"), "total": format(subtotal, "f")}


def _quote_line(line: QuoteLine) -> dict[str, Any]:
    """A breakdown entry: the quote line's set fields in a fixed order, decimals as plain text."""
    out: dict[str, Any] = {"description": line.description, "kind": line.kind}
    if line.tier is not None:
        out["tier"] = line.tier
    if line.from_quantity is not None:
        out["from_quantity"] = decimal_text(line.from_quantity)
    if line.up_to is not None:
        out["up_to"] = decimal_text(line.up_to)
    if line.quantity is not None:
        out["quantity"] = decimal_text(line.quantity)
    if line.unit_amount is not None:
        out["unit_amount"] = decimal_text(line.unit_amount)
    if line.amount is not None:
        out["amount"] = decimal_text(line.amount)
    return out
