"""Tier tables for graduated and volume prices, compiled once so pricing a quantity is a bisect plus a
couple of Decimal operations.

Conventions (pinned by the public vectors): `up_to` is inclusive and the next tier starts just above it;
tier 1 starts at 0 and contains 0. A tier prices per unit (`unit_amount`) or per started block
(`block_size` + `block_amount`, blocks rounded up), plus an optional `flat_amount`.

Arithmetic runs in the caller's decimal context; the engine (rating.engine) sets `money.EXACT`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from meterstream.rating.lines import QuoteLine, plain
from meterstream.rating.money import ZERO

__all__ = ["GraduatedTable", "TierSpec", "VolumeTable", "ceil_div"]

_ONE = Decimal(1)


def ceil_div(numerator: Decimal, divisor: Decimal) -> Decimal:
    """Number of started blocks of `divisor` in `numerator` (both >= 0), exactly (no division rounding)."""
    whole, rest = divmod(numerator, divisor)
    return whole + _ONE if rest else whole


class TierSpec(Protocol):
    """The fields a tier table reads (the parsed `Tier` model provides them)."""

    up_to: Decimal | None
    unit_amount: Decimal | None
    flat_amount: Decimal | None
    block_size: Decimal | None
    block_amount: Decimal | None


@dataclass(frozen=True, slots=True)
class _Tier:
    number: int
    lower: Decimal  # exclusive, except tier 1 which contains 0
    upper: Decimal | None  # inclusive; None = open
    unit: Decimal | None
    block_size: Decimal | None
    block_amount: Decimal | None
    flat: Decimal

    def describe(self) -> str:
        if self.number == 1:
            where = "all units" if self.upper is None else f"up to {self.upper}"
        elif self.upper is None:
            where = f"above {self.lower}"
        else:
            where = f"above {self.lower} up to {self.upper}"
        return f"Tier {self.number} ({where})"

    def usage(self, units: Decimal) -> Decimal:
        """Price of `units` counted in this tier, flat amount excluded."""
        if self.unit is not None:
            return units * self.unit
        if self.block_size is not None:
            return ceil_div(units, self.block_size) * self.block_amount
        return ZERO

    def lines(self, units: Decimal) -> list[QuoteLine]:
        """The usage line (if any units) and the flat line (if any) for `units` priced by this tier."""
        out: list[QuoteLine] = []
        bounds = {"tier": self.number, "from_quantity": self.lower, "up_to": self.upper}
        name = self.describe()
        if units and self.unit is not None:
            out.append(
                QuoteLine(
                    "tier", f"{name}: {plain(units)} × {self.unit}", units, self.unit, units * self.unit, **bounds
                )
            )
        elif units and self.block_size is not None:
            blocks = ceil_div(units, self.block_size)
            text = f"{name}: {plain(units)} units = {plain(blocks)} block(s) of {self.block_size} × {self.block_amount}"
            out.append(QuoteLine("tier_block", text, blocks, self.block_amount, blocks * self.block_amount, **bounds))
        if self.flat:
            out.append(QuoteLine("tier_flat", f"{name}: flat fee", _ONE, self.flat, self.flat, **bounds))
        return out


def _compile(specs: Sequence[TierSpec]) -> tuple[list[_Tier], list[Decimal]]:
    tiers: list[_Tier] = []
    lower = ZERO
    for number, spec in enumerate(specs, start=1):
        tiers.append(
            _Tier(
                number,
                lower,
                spec.up_to,
                spec.unit_amount,
                spec.block_size,
                spec.block_amount,
                spec.flat_amount or ZERO,
            )
        )
        lower = spec.up_to if spec.up_to is not None else lower
    uppers = [t.upper for t in tiers[:-1] if t.upper is not None]  # the last tier is open (validated)
    return tiers, uppers


class GraduatedTable:
    """Each unit is priced by the tier it falls in; every tier reached adds its flat amount once.

    Tier 1 is always reached (its flat amount is charged at quantity 0); tier n > 1 is reached as soon as
    the quantity exceeds tier n-1's `up_to`. `amount` is a closure over precomputed rows (hot path).
    """

    __slots__ = ("_uppers", "amount", "tiers")

    def __init__(self, specs: Sequence[TierSpec]) -> None:
        self.tiers, self._uppers = _compile(specs)
        # Per tier: (lower, price of everything up to `lower` + this tier's flat, unit, tier), so that
        # amount(q) = base + usage of the units above `lower`.
        rows = []
        below = ZERO
        for tier in self.tiers:
            base = below + tier.flat
            rows.append((tier.lower, base, tier.unit, tier))
            if tier.upper is not None:
                below = base + tier.usage(tier.upper - tier.lower)
        self.amount = _graduated_amount(rows, self._uppers)

    def lines(self, quantity: Decimal) -> list[QuoteLine]:
        out: list[QuoteLine] = []
        for tier in self.tiers[: bisect_left(self._uppers, quantity) + 1]:
            top = quantity if tier.upper is None or quantity < tier.upper else tier.upper
            out.extend(tier.lines(top - tier.lower))
        return out


def _graduated_amount(
    rows: list[tuple[Decimal, Decimal, Decimal | None, _Tier]], uppers: list[Decimal]
) -> Callable[[Decimal], Decimal]:
    def amount(quantity: Decimal) -> Decimal:
        lower, base, unit, tier = rows[bisect_left(uppers, quantity)]
        if unit is not None:  # the common case, inlined
            return base + (quantity - lower) * unit
        return base + tier.usage(quantity - lower)

    return amount


class VolumeTable:
    """The tier containing the whole quantity prices all of it (blocks counted over the whole quantity),
    plus that tier's flat amount. Quantity 0 falls in tier 1."""

    __slots__ = ("_uppers", "amount", "tiers")

    def __init__(self, specs: Sequence[TierSpec]) -> None:
        self.tiers, self._uppers = _compile(specs)
        self.amount = _volume_amount(self.tiers, self._uppers)

    def lines(self, quantity: Decimal) -> list[QuoteLine]:
        return self.tiers[bisect_left(self._uppers, quantity)].lines(quantity)


def _volume_amount(tiers: list[_Tier], uppers: list[Decimal]) -> Callable[[Decimal], Decimal]:
    def amount(quantity: Decimal) -> Decimal:
        tier = tiers[bisect_left(uppers, quantity)]
        if tier.unit is not None:
            return quantity * tier.unit + tier.flat
        return tier.usage(quantity) + tier.flat

    return amount
