"""Late usage: what a closed period's invoice would say now, minus what was billed for it. Pure.

Rule: a closed period's invoice never changes. Usage that reaches ClickHouse after its period was
closed is billed on the next close as adjustment lines, one per line key whose quantity or amount
moved, priced as the difference between the period's total now and what was billed — so tiers,
bundles and minimums of that period apply exactly as if the usage had been on time.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from meterstream.invoice_emitter.document import decimal_text
from meterstream.rating.money import EXACT


def adjustment_lines(
    now_lines: list[dict[str, Any]], billed: dict[str, tuple[str, Decimal, Decimal]], applies_to: str, currency: str
) -> list[dict[str, Any]]:
    """Lines for the difference between `now_lines` (the period recomputed) and `billed` (by line key).

    `amount` is the line's amount now minus the amount billed (both rounded, so the period's invoices add up to
    its rounded amount now); `precise_amount` is the line's unrounded amount now minus the amount billed."""
    from meterstream.rating import round_money

    current = {line.get("line_key", line["meter"]): line for line in now_lines}
    out = []
    for key in sorted(set(current) | set(billed)):
        line = current.get(key)
        meter, billed_q, billed_a = billed.get(key, (line["meter"] if line else key, Decimal(0), Decimal(0)))
        quantity = EXACT.subtract(Decimal(line["quantity"]), billed_q) if line else EXACT.minus(billed_q)
        amount = EXACT.subtract(Decimal(line["amount"]), billed_a) if line else EXACT.minus(billed_a)
        now_precise = (line.get("precise_amount") or line["amount"]) if line else None
        precise = EXACT.subtract(Decimal(now_precise), billed_a) if line else EXACT.minus(billed_a)
        if quantity == 0 and amount == 0:
            continue
        what = line["description"] if line else meter.replace("_", " ")
        out.append({
            "kind": "adjustment",
            "applies_to": applies_to,
            "meter": meter,
            "line_key": key,
            "description": f"late usage for {applies_to}: {what}",
            "quantity": decimal_text(quantity),
            "amount": format(round_money(amount, currency), "f"),
            "precise_amount": decimal_text(precise),
        })  # fmt: skip
    return out
