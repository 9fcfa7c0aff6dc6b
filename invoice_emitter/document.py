"""Invoice documents from period totals, priced by the one engine (`rating.quote`). Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from meterstream.aggregation.usage_query import MeterUsage
from meterstream.rating import quote, round_money
from meterstream.rating.catalog import Plan
from meterstream.rating.lines import QuoteLine
from meterstream.rating.money import EXACT

DOCUMENT_VERSION = 1
_ZERO = Decimal(0)
_add = EXACT.add  # sums of amounts in the one explicit context (the default one keeps only 28 digits)


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

    def __init__(self, price: Any, quantity: Decimal, texts: dict[Decimal, str] | None = None) -> None:
        q = quote(price, quantity)
        self.precise: Decimal = q.precise_total
        self.amount: Decimal = q.total  # rounded once to the currency's minor unit
        self.quantity_text = decimal_text(quantity)
        self.precise_text = decimal_text(q.precise_total)
        self.amount_text = format(q.total, "f")
        self.breakdown = [_quote_line(line, {} if texts is None else texts) for line in q.lines]


class MeterPricer:
    """Meter lines for many invoices (one close): each distinct (price, quantity) is quoted once.

    A quote is a pure function of the price and the quantity, so a repeat reuses the first result,
    breakdown included (shared by the documents that show it; documents are not modified once built).
    The key is the quantity's exact text, not its value: the breakdown texts show its digits. At most
    `limit` distinct pairs are kept; beyond that, new pairs are quoted every time.
    """

    __slots__ = ("_kept", "_limit", "_plans", "_prices", "_texts")

    def __init__(self, limit: int = 250_000) -> None:
        # id(price) -> (price, quantity text -> line); holding the price keeps its id() from being reused
        self._prices: dict[int, tuple[Any, dict[str, PricedMeter]]] = {}
        self._plans: dict[int, tuple[Plan, list[tuple[str, str, Any, dict[str, PricedMeter]]]]] = {}
        self._texts: dict[Decimal, str] = {}  # plain text of the prices' constants (tier bounds, unit amounts)
        self._kept = 0
        self._limit = limit

    def __call__(self, price: Any, quantity: Decimal) -> PricedMeter:
        return self.line(self._cache(price), price, quantity)

    def line(self, cache: dict[str, PricedMeter], price: Any, quantity: Decimal) -> PricedMeter:
        """The line of `quantity` under `price`, whose cache (`_cache(price)`) is `cache`."""
        key = str(quantity)
        priced = cache.get(key)
        if priced is None:
            priced = PricedMeter(price, quantity, self._texts)
            if self._kept < self._limit:
                self._kept += 1
                cache[key] = priced
        return priced

    def meters(self, plan: Plan) -> list[tuple[str, str, Any, dict[str, PricedMeter]]]:
        """The plan's priced meters in line order: (meter, line description, price, the price's cache)."""
        entry = self._plans.get(id(plan))
        if entry is None:
            prices = plan.prices
            meters = [(m, m.replace("_", " "), prices[m], self._cache(prices[m])) for m in sorted(prices)]
            entry = self._plans[id(plan)] = (plan, meters)
        return entry[1]

    def _cache(self, price: Any) -> dict[str, PricedMeter]:
        entry = self._prices.get(id(price))
        if entry is None:
            entry = self._prices[id(price)] = (price, {})
        return entry[1]


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
    pricer = pricer or MeterPricer(limit=0)
    telecom = plan.telecom_meters
    by_meter = {u.meter: u for u in usage if u.meter not in telecom}
    if not by_meter.keys() <= plan.prices.keys():
        meter = min(by_meter.keys() - plan.prices.keys())
        raise ValueError(f"plan {plan.id!r} does not price meter {meter!r} of {tenant}/{customer}")
    lines: list[dict[str, Any]] = []
    differ: list[str] = []
    subtotal = _ZERO
    for line in extra_lines or ():  # lines priced elsewhere (telecom re-rating)
        lines.append(_numbered(line, len(lines) + 1))
        subtotal = _add(subtotal, Decimal(line["amount"]))
    line_of = pricer.line
    for meter, description, price, cache in pricer.meters(plan):
        u = by_meter.get(meter)
        if u is None:
            p = line_of(cache, price, _ZERO)
            if p.amount == 0:
                continue
            events, streamed = 0, _ZERO
            streamed_text = "0"
        else:
            p = line_of(cache, price, u.quantity)
            events, streamed = u.events, u.streamed_amount
            # the same value has the same text, except for the sign of a zero
            streamed_text = p.precise_text if streamed == p.precise and streamed else decimal_text(streamed)
        if p.precise != streamed:
            differ.append(meter)
        lines.append(
            {
                "line_no": len(lines) + 1,
                "meter": meter,
                "description": description,
                "quantity": p.quantity_text,
                "events": events,
                "precise_amount": p.precise_text,
                "amount": p.amount_text,
                "streamed_amount": streamed_text,
                "breakdown": p.breakdown,
            }
        )
        subtotal = _add(subtotal, p.amount)
    total = format(round_money(subtotal, plan.currency), "f")
    doc = empty_invoice(tenant, customer, period, plan.id, plan.currency)
    return {**doc, "lines": lines, "subtotal": total, "total": total}, differ


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
        all_lines.append(_numbered(line, len(all_lines) + 1))
    subtotal = _ZERO
    for line in all_lines:
        subtotal = _add(subtotal, Decimal(line["amount"]))
    subtotal = round_money(subtotal, doc["currency"])
    return {**doc, "lines": all_lines, "subtotal": format(subtotal, "f"), "total": format(subtotal, "f")}


def _numbered(line: dict[str, Any], line_no: int) -> dict[str, Any]:
    """`line` renumbered: `line_no` first, its other fields in their order."""
    return {"line_no": line_no, **{k: v for k, v in line.items() if k != "line_no"}}


def _quote_line(line: QuoteLine, texts: dict[Decimal, str]) -> dict[str, Any]:
    """A breakdown entry: the quote line's set fields in a fixed order, decimals as plain text.

    `texts` remembers the text of the price's constants (tier bounds, unit amounts); a zero is not
    remembered, since 0 and -0 are equal keys with different texts.
    """
    out: dict[str, Any] = {"description": line.description, "kind": line.kind}
    if line.tier is not None:
        out["tier"] = line.tier
    for name, value in (("from_quantity", line.from_quantity), ("up_to", line.up_to)):
        if value is not None:
            text = texts.get(value)
            if text is None:
                text = decimal_text(value)
                if value:
                    texts[value] = text
            out[name] = text
    if line.quantity is not None:
        out["quantity"] = decimal_text(line.quantity)
    unit = line.unit_amount
    if unit is not None:
        text = texts.get(unit)
        if text is None:
            text = decimal_text(unit)
            if unit:
                texts[unit] = text
        out["unit_amount"] = text
    if line.amount is not None:
        out["amount"] = decimal_text(line.amount)
    return out
