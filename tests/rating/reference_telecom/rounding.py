"""The one rounding step of a rated event (kept local: the tariff engine is separate)."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal

METHODS = {"up": ROUND_UP, "half_up": ROUND_HALF_UP, "down": ROUND_DOWN}


def quantum(decimals: int) -> Decimal:
    """``Decimal('0.0001')`` for 4 decimals; used as the ``quantize`` exponent."""
    return Decimal(1).scaleb(-decimals)


def round_amount(value: Decimal, q: Decimal, method: str) -> Decimal:
    """Round ``value`` to the quantum ``q``; ``up`` is away from zero (costs are >= 0)."""
    return value.quantize(q, rounding=METHODS[method])
