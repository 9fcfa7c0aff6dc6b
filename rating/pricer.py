"""Compiled prices: the hot path (`total`/`delta`) and the explanation (`explain`) share one set of
precomputed tables, so the streaming rater and a quote can never disagree.

Order of operations for usage models (unit, graduated, volume, package, flat), applied to the period's
cumulative quantity:
  1. unit conversion: q x multiply_by / divide_by, rounded (up | down | half_up) to `conversion_precision`
     decimals (default 0 = whole units);
  2. free units: max(0, q - free_units);
  3. the model prices what is left;
  4. period minimum (a true-up line up to it) and maximum (a negative cap line down to it).
Nothing is rounded to money here. Arithmetic runs in the current decimal context: the engine
(rating.engine) runs it under `money.EXACT`, which raises rather than rounds.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Literal, Protocol

from meterstream.rating.lines import QuoteLine, plain
from meterstream.rating.money import ZERO
from meterstream.rating.tiers import ceil_div

__all__ = [
    "FlatCore",
    "ModelCore",
    "PackageCore",
    "PercentagePricer",
    "Pricer",
    "UnitCore",
    "UsagePricer",
    "conversion",
]

_ONE = Decimal(1)
Amount = Callable[[Decimal], Decimal]


def _check_quantity(quantity: Decimal) -> None:
    if quantity < ZERO:
        raise ValueError(f"quantity must be >= 0, got {quantity}")


class ModelCore(Protocol):
    """A pricing model proper: the amount for a (converted, net of free units) quantity, and its lines."""

    amount: Amount

    def lines(self, quantity: Decimal) -> list[QuoteLine]: ...


class UnitCore:
    """quantity x unit_amount."""

    __slots__ = ("amount", "unit_amount")

    def __init__(self, unit_amount: Decimal) -> None:
        self.unit_amount = unit_amount
        self.amount: Amount = unit_amount.__rmul__  # q -> q * unit_amount, without a Python frame

    def lines(self, quantity: Decimal) -> list[QuoteLine]:
        if not quantity:
            return []
        text = f"{plain(quantity)} × {self.unit_amount}"
        return [QuoteLine("unit", text, quantity, self.unit_amount, quantity * self.unit_amount)]


class FlatCore(UnitCore):
    """`amount` per period (or seat); the quantity is how many, possibly a proration fraction."""

    __slots__ = ()

    def lines(self, quantity: Decimal) -> list[QuoteLine]:
        if not quantity:
            return []
        text = f"Flat fee × {plain(quantity)}"
        return [QuoteLine("flat", text, quantity, self.unit_amount, quantity * self.unit_amount)]


class PackageCore:
    """package_amount per package of package_size units; packages counted rounding up (or down)."""

    __slots__ = ("amount", "package_amount", "package_size", "packages")

    def __init__(self, package_amount: Decimal, package_size: Decimal, rounding: Literal["up", "down"]) -> None:
        self.package_amount = package_amount
        self.package_size = package_size
        round_up = rounding == "up"

        def packages(quantity: Decimal) -> Decimal:
            return ceil_div(quantity, package_size) if round_up else quantity // package_size

        def amount(quantity: Decimal) -> Decimal:
            return packages(quantity) * package_amount

        self.packages: Amount = packages
        self.amount: Amount = amount

    def lines(self, quantity: Decimal) -> list[QuoteLine]:
        packages = self.packages(quantity)
        if not packages:
            return []
        text = f"{plain(quantity)} units = {plain(packages)} package(s) of {self.package_size} × {self.package_amount}"
        return [QuoteLine("package", text, packages, self.package_amount, packages * self.package_amount)]


def conversion(
    divide_by: Decimal | None,
    multiply_by: Decimal | None,
    rounding: Literal["up", "down", "half_up"] = "up",
    precision: int = 0,
) -> Amount:
    """Unit conversion before pricing, exact: q x multiply_by / divide_by rounded to `precision` decimals.

    Scaling by 10**precision first makes the rounding an integer division (divmod), never a rounded
    division: bytes -> GB with divide_by 1000000000, seconds -> minutes with divide_by 60.
    """
    divisor = divide_by or _ONE
    factor = (multiply_by or _ONE).scaleb(precision)
    half = divisor / 2
    round_up, half_up = rounding == "up", rounding == "half_up"

    def convert(quantity: Decimal) -> Decimal:
        whole, rest = divmod(quantity * factor, divisor)
        if rest and (round_up or (half_up and rest >= half)):
            whole += _ONE
        return whole.scaleb(-precision) if precision else whole

    return convert


class Pricer(Protocol):
    """What the engine needs from a compiled price (run under money.EXACT)."""

    def total(self, quantity: Decimal) -> Decimal: ...

    def delta(self, before: Decimal | None, after: Decimal) -> Decimal: ...

    def explain(self, quantity: Decimal) -> tuple[Decimal, list[QuoteLine]]: ...


def _total(
    amount: Amount,
    convert: Amount | None,
    free: Decimal | None,
    minimum: Decimal | None,
    maximum: Decimal | None,
) -> Amount:
    """The period total F(q) as one closure (the hot path): no attribute lookups, and a step the price
    does not use costs a None test."""
    if convert is None and free is None and minimum is None and maximum is None:
        return amount
    low = minimum if minimum is not None else ZERO

    def total(quantity: Decimal) -> Decimal:
        if convert is not None:
            quantity = convert(quantity)
        if free is not None:
            quantity = quantity - free if quantity > free else ZERO
        value = amount(quantity)
        if value < low:
            return low
        if maximum is not None and value > maximum:
            return maximum
        return value

    return total


class UsagePricer:
    """A usage model wrapped in conversion -> free units -> model -> minimum/maximum (see module doc)."""

    __slots__ = ("convert", "core", "free_units", "maximum", "minimum", "total")

    def __init__(
        self,
        core: ModelCore,
        *,
        convert: Amount | None = None,
        free_units: Decimal | None = None,
        minimum: Decimal | None = None,
        maximum: Decimal | None = None,
    ) -> None:
        self.core = core
        self.convert = convert
        self.free_units = free_units or None
        self.minimum = minimum
        self.maximum = maximum
        # Unrounded period total for a cumulative quantity: the F whose differences are deltas.
        self.total: Amount = _total(core.amount, convert, self.free_units, minimum, maximum)

    def converted(self, quantity: Decimal) -> Decimal:
        """The quantity in priced units (step 1)."""
        return quantity if self.convert is None else self.convert(quantity)

    def priced_quantity(self, quantity: Decimal) -> Decimal:
        """The quantity the model prices (steps 1 and 2)."""
        quantity = self.converted(quantity)
        free = self.free_units
        if free is not None:
            quantity = quantity - free if quantity > free else ZERO
        return quantity

    def delta(self, before: Decimal | None, after: Decimal) -> Decimal:
        """total(after) - total(before); before=None (first event of the period) is total(after)."""
        if before is None:
            if after < ZERO:
                raise ValueError(f"cumulative quantity must be >= 0, got {after}")
            return self.total(after)
        if after < ZERO or before < ZERO:
            raise ValueError(f"cumulative quantities must be >= 0, got before={before} after={after}")
        total = self.total
        return total(after) - total(before)

    def explain(self, quantity: Decimal) -> tuple[Decimal, list[QuoteLine]]:
        """(priced quantity, lines) for a quantity; the lines add up exactly to total(quantity)."""
        _check_quantity(quantity)
        priced = self.priced_quantity(quantity)
        lines: list[QuoteLine] = []
        if self.free_units is not None:
            used = self.converted(quantity) - priced
            lines.append(QuoteLine("free_units", f"{plain(used)} of {self.free_units} free units", used, ZERO, ZERO))
        lines.extend(self.core.lines(priced))
        amount = self.core.amount(priced)
        if self.minimum is not None and amount < self.minimum:
            text = f"Minimum {self.minimum}: true-up"
            lines.append(QuoteLine("minimum_true_up", text, _ONE, None, self.minimum - amount))
        elif self.maximum is not None and amount > self.maximum:
            text = f"Maximum {self.maximum}: cap"
            lines.append(QuoteLine("maximum_cap", text, _ONE, None, self.maximum - amount))
        return priced, lines


class PercentagePricer:
    """Payment-processing style fee on ONE event's value: value x rate% + fixed_amount, then clamped to
    [min_amount, max_amount]. A per-event model: `quote` prices one event whose value is the quantity,
    and `delta(before, after)` prices the event of value after - before (so deltas add up to quote's
    total only when there is no fixed_amount, min_amount or max_amount)."""

    __slots__ = ("fixed_amount", "max_amount", "min_amount", "rate", "rate_fraction")

    def __init__(
        self,
        rate: Decimal,
        fixed_amount: Decimal | None,
        min_amount: Decimal | None,
        max_amount: Decimal | None,
    ) -> None:
        self.rate = rate
        self.rate_fraction = rate.scaleb(-2)
        self.fixed_amount = fixed_amount or ZERO
        self.min_amount = min_amount
        self.max_amount = max_amount

    def _raw(self, value: Decimal) -> Decimal:
        return value * self.rate_fraction + self.fixed_amount

    def total(self, quantity: Decimal) -> Decimal:
        fee = self._raw(quantity)
        if self.min_amount is not None and fee < self.min_amount:
            return self.min_amount
        if self.max_amount is not None and fee > self.max_amount:
            return self.max_amount
        return fee

    def delta(self, before: Decimal | None, after: Decimal) -> Decimal:
        value = after if before is None else after - before
        if value < ZERO:
            raise ValueError(f"percentage fees price one event's value, which must be >= 0 (got {value})")
        return self.total(value)

    def explain(self, quantity: Decimal) -> tuple[Decimal, list[QuoteLine]]:
        _check_quantity(quantity)
        text = f"{self.rate}% of {plain(quantity)}"
        lines = [QuoteLine("percentage", text, quantity, self.rate_fraction, quantity * self.rate_fraction)]
        if self.fixed_amount:
            fixed = self.fixed_amount
            lines.append(QuoteLine("fixed_fee", "Fixed fee per event", _ONE, fixed, fixed))
        raw = self._raw(quantity)
        if self.min_amount is not None and raw < self.min_amount:
            text = f"Minimum fee {self.min_amount}"
            lines.append(QuoteLine("event_minimum", text, _ONE, None, self.min_amount - raw))
        elif self.max_amount is not None and raw > self.max_amount:
            text = f"Maximum fee {self.max_amount}"
            lines.append(QuoteLine("event_maximum", text, _ONE, None, self.max_amount - raw))
        return quantity, lines
