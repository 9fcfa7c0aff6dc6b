"""The two entry points of the engine: `quote` (explain a period's quantity) and `delta` (the streaming
rater's hot path). Pure functions over a parsed price; nothing is rounded except `Quote.total`.

Both run the compiled price under `money.EXACT`, a decimal context that raises instead of rounding,
so every unrounded amount is exact (or an error), whatever the caller's own decimal context is.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from meterstream.rating.lines import Quote
from meterstream.rating.money import EXACT, ZERO, exact_runner, round_money, to_decimal
from meterstream.rating.price import PriceBase, parse_price

__all__ = ["delta", "quote"]


def quote(price: Mapping[str, Any] | PriceBase, quantity: Decimal | int | str) -> Quote:
    """Price a period's (cumulative) quantity: lines with unrounded amounts, their exact sum, and that sum
    rounded once to the currency's minor unit (half away from zero).

    For the percentage model the quantity is one event's value.
    """
    parsed = price if isinstance(price, PriceBase) else parse_price(price)
    amount = to_decimal(quantity)
    priced, lines = exact_runner()(parsed.pricer.explain, amount)
    precise = ZERO
    add = EXACT.add  # the sum in EXACT, which raises instead of rounding
    for line in lines:
        precise = add(precise, line.amount)
    return Quote(parsed.currency, round_money(precise, parsed.currency), precise, tuple(lines), amount, priced)


def delta(
    price: Mapping[str, Any] | PriceBase, before: Decimal | int | str | None, after: Decimal | int | str
) -> Decimal:
    """Unrounded amount for moving a period's cumulative quantity from `before` to `after`.

    `before=None` marks the first event of the period and returns the whole total at `after`, so charges
    due even at quantity 0 (graduated tier-1 flat amount, a minimum) are counted once. For usage models the
    deltas of any split add up exactly to `quote(price, total).precise_total`; volume tiers can give
    negative deltas. Callers on the hot path should pass a parsed price and Decimals.
    """
    if type(after) is not Decimal:
        after = to_decimal(after)
    if before is not None and type(before) is not Decimal:
        before = to_decimal(before)
    try:
        pricer = price.pricer  # type: ignore[union-attr]
    except AttributeError:
        pricer = parse_price(price).pricer
    return exact_runner()(pricer.delta, before, after)
