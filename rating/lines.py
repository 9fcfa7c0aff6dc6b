"""What a quote returns: the rounded total, the exact total, and the lines that explain it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["Quote", "QuoteLine", "plain"]


def plain(value: Decimal) -> str:
    """Decimal text for a line's wording: no exponent, no storage scale's trailing zeros (1000.000000000000 -> 1000)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class QuoteLine:
    """One explainable piece of a total. `amount` is unrounded; for priced lines it is quantity x unit_amount.

    kind: unit | tier | tier_block | tier_flat | package | flat | percentage | fixed_fee | event_minimum
    | event_maximum | free_units | minimum_true_up | maximum_cap. For tier lines `tier` is 1-based and
    (`from_quantity`, `up_to`] is the tier's range (`up_to` None = open). For tier_block and package
    lines `quantity` counts blocks/packages, not units.
    """

    kind: str
    description: str
    quantity: Decimal
    unit_amount: Decimal | None
    amount: Decimal
    tier: int | None = None
    from_quantity: Decimal | None = None
    up_to: Decimal | None = None

    def to_json(self) -> dict[str, object]:
        """Plain JSON-able dict, Decimals as strings (never floats)."""
        return {
            "kind": self.kind,
            "description": self.description,
            "quantity": str(self.quantity),
            "unit_amount": _s(self.unit_amount),
            "amount": str(self.amount),
            "tier": self.tier,
            "from_quantity": _s(self.from_quantity),
            "up_to": _s(self.up_to),
        }


@dataclass(frozen=True, slots=True)
class Quote:
    """A priced quantity. `total` is `precise_total` rounded once to the currency's minor unit.

    `quantity` is what was asked for; `priced_quantity` is what the model priced after unit
    conversion and free units.
    """

    currency: str
    total: Decimal
    precise_total: Decimal
    lines: tuple[QuoteLine, ...]
    quantity: Decimal
    priced_quantity: Decimal

    def to_json(self) -> dict[str, object]:
        """Plain JSON-able dict, Decimals as strings (never floats)."""
        return {
            "currency": self.currency,
            "total": str(self.total),
            "precise_total": str(self.precise_total),
            "quantity": str(self.quantity),
            "priced_quantity": str(self.priced_quantity),
            "lines": [line.to_json() for line in self.lines],
        }
