"""Invoice documents from period totals, priced by the one engine (`rating.quote`). Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from aggregation.usage_query import MeterUsage
from rating.catalog import Plan

DOCUMENT_VERSION = 1


def decimal_text(value: Decimal) -> str:
    """Plain decimal text without the storage scale's trailing zeros (1250.750000 -> 1250.75)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def invoice_id(tenant: str, customer: str, period: str) -> str:
    """Stable id: a re-run of the same close names the same invoice (numbering comes with the lifecycle)."""
    digest = hashlib.sha256(f"{tenant}\x1f{customer}\x1f{period}".encode()).hexdigest()[:16]
    return f"INV-{period.replace('-', '')}-{digest}"


def build_invoice(
    tenant: str,
    customer: str,
    period: str,
    plan: Plan,
    usage: Iterable[MeterUsage],
    extra_lines: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One customer's invoice: a line per priced meter (with its tier breakdown); lines add up to the total.

    Each line is rounded once to the currency's minor unit (half away from zero); the total is the sum
    of the rounded lines, so the document always adds up. `precise_amount` keeps the unrounded figure.
    """
    from rating import quote

    by_meter = {u.meter: u for u in usage if u.meter not in plan.telecom_meters}
    lines: list[dict[str, Any]] = []
    lines += extra_lines or []  # lines priced elsewhere (telecom re-rating)
    for meter in sorted(set(plan.prices) | set(by_meter)):
        u = by_meter.get(meter)
        quantity = u.quantity if u else Decimal(0)
        if meter not in plan.prices:
            raise ValueError(f"plan {plan.id!r} does not price meter {meter!r} of {tenant}/{customer}")
        q = quote(plan.prices[meter], quantity)
        if u is None and q.total == 0:
            continue
        lines.append(
            {
                "meter": meter,
                "description": meter.replace("_", " "),
                "quantity": decimal_text(quantity),
                "events": u.events if u else 0,
                "precise_amount": decimal_text(q.precise_total),
                "amount": format(q.total, "f"),
                "streamed_amount": decimal_text(u.streamed_amount) if u else "0",
                "breakdown": [_quote_line(line) for line in q.lines],
            }
        )
    return with_lines(empty_invoice(tenant, customer, period, plan.id, plan.currency), lines)


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
    from rating import round_money

    all_lines = list(doc["lines"])
    for line in lines:
        all_lines.append({"line_no": len(all_lines) + 1, **{k: v for k, v in line.items() if k != "line_no"}})
    subtotal = round_money(sum((Decimal(line["amount"]) for line in all_lines), Decimal(0)), doc["currency"])
    return {**doc, "lines": all_lines, "subtotal": format(subtotal, "f"), "total": format(subtotal, "f")}


def _quote_line(line: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in (
        "description",
        "kind",
        "tier",
        "from_quantity",
        "up_to",
        "quantity",
        "unit_amount",
        "amount",
    ):
        value = getattr(line, name, None)
        if value is not None:
            out[name] = decimal_text(value) if isinstance(value, Decimal) else value
    return out
