"""Compiled prices: the hot path (`Pricer.delta`) and the explanation (`Pricer.explain`) share one set
of precomputed tables, so the streaming rater and a quote can never disagree.

Order of operations for usage models (unit, graduated, volume, package, flat), applied to the period's
cumulative quantity:
  1. unit conversion: q x multiply_by / divide_by, rounded (up | down | half_up) to `conversion_precision`
     decimals (default 0 = whole units);
  2. free units: max(0, q - free_units);
  3. the model prices what is left;
  4. period minimum (a true-up line up to it) and maximum (a negative cap line down to it).
All arithmetic is exact (`money.EXACT` raises rather than rounds); nothing is rounded to money here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, Protocol

from rating.lines import QuoteLine
from rating.money import EXACT, ZERO
from rating.tiers import ceil_div

__all__ = [
    "Conversion",
    "FlatCore",
    "ModelCore",
    "PackageCore",
    "PercentagePricer",
    "Pricer",
    "UnitCore",
    "UsagePricer",
]

_add, _sub, _mul, _divmod = EXACT.add, EXACT.subtract, EXACT.multiply, EXACT.divmod
_ONE = Decimal(1)
_TWO = Decimal(2)


def _check_quantity(quantity: Decimal) -> None:
    if quantity < ZERO:
        raise ValueError(f"quantity must be >= 0, got {quantity}")


class ModelCore(Protocol):
    """A pricing model proper: the amount for a (converted, net of free units) quantity, and its lines."""

    def amount(self, quantity: Decimal) -> Decimal: ...

    def lines(self, quantity: Decimal) -> list[QuoteLine]: ...


class UnitCore:
    """quantity x unit_amount."""

    __slots__ = ("unit_amount",)

    def __init__(self, unit_amount: Decimal) -> None:
        self.unit_amount = unit_amount

    def amount(self, quantity: Decimal) -> Decimal:
        return _mul(quantity, self.unit_amount)

    def lines(self, quantity: Decimal) -> list[QuoteLine]:
        if not quantity:
            return []
        return [
            QuoteLine(
                "unit", f"{quantity} × {self.unit_amount}", quantity, self.unit_amount, self.amount(quantity)
            )
        ]


class FlatCore(UnitCore):
    """`amount` per period (or seat); the quantity is how many, possibly a proration fraction."""

    __slots__ = ()

    def lines(self, quantity: Decimal) -> list[QuoteLine]:
        if not quantity:
            return []
        return [
            QuoteLine("flat", f"Flat fee × {quantity}", quantity, self.unit_amount, self.amount(quantity))
        ]


class PackageCore:
    """package_amount per package of package_size units; packages counted rounding up (or down)."""

    __slots__ = ("package_amount", "package_size", "round_up")

    def __init__(
        self, package_amount: Decimal, package_size: Decimal, rounding: Literal["up", "down"]
    ) -> None:
        self.package_amount = package_amount
        self.package_size = package_size
        self.round_up = rounding == "up"

    def packages(self, quantity: Decimal) -> Decimal:
        if self.round_up:
            return ceil_div(quantity, self.package_size)
        return _divmod(quantity, self.package_size)[0]

    def amount(self, quantity: Decimal) -> Decimal:
        return _mul(self.packages(quantity), self.package_amount)

    def lines(self, quantity: Decimal) -> list[QuoteLine]:
        packages = self.packages(quantity)
        if not packages:
            return []
        return [
            QuoteLine(
                "package",
                f"{quantity} units = {packages} package(s) of {self.package_size} × {self.package_amount}",
                packages,
                self.package_amount,
                _mul(packages, self.package_amount),
            )
        ]


class Conversion:
    """Unit conversion before pricing, exact: q x multiply_by / divide_by rounded to `precision` decimals."""

    __slots__ = ("_divisor", "_factor", "_mode", "_precision")

    def __init__(
        self,
        divide_by: Decimal | None,
        multiply_by: Decimal | None,
        rounding: Literal["up", "down", "half_up"],
        precision: int,
    ) -> None:
        self._divisor = divide_by or _ONE
        # Scale by 10**precision so that rounding to `precision` decimals is an integer division.
        self._factor = _mul(multiply_by or _ONE, _ONE.scaleb(precision))
        self._mode = rounding
        self._precision = -precision

    def __call__(self, quantity: Decimal) -> Decimal:
        whole, rest = _divmod(_mul(quantity, self._factor), self._divisor)
        if rest and (self._mode == "up" or (self._mode == "half_up" and _mul(rest, _TWO) >= self._divisor)):
            whole = _add(whole, _ONE)
        return whole.scaleb(self._precision, EXACT)


class Pricer(Protocol):
    """What the engine needs from a compiled price."""

    def total(self, quantity: Decimal) -> Decimal: ...

    def delta(self, before: Decimal | None, after: Decimal) -> Decimal: ...

    def explain(self, quantity: Decimal) -> tuple[Decimal, list[QuoteLine]]: ...


class UsagePricer:
    """A usage model wrapped in conversion -> free units -> model -> minimum/maximum (see module doc)."""

    __slots__ = ("_amount", "convert", "core", "free_units", "maximum", "minimum")

    def __init__(
        self,
        core: ModelCore,
        *,
        convert: Conversion | None = None,
        free_units: Decimal | None = None,
        minimum: Decimal | None = None,
        maximum: Decimal | None = None,
    ) -> None:
        self.core = core
        self._amount = core.amount
        self.convert = convert
        self.free_units = free_units or None
        self.minimum = minimum
        self.maximum = maximum

    def priced_quantity(self, quantity: Decimal) -> Decimal:
        """The quantity the model prices: after conversion and free units."""
        if self.convert is not None:
            quantity = self.convert(quantity)
        free = self.free_units
        if free is not None:
            quantity = _sub(quantity, free) if quantity > free else ZERO
        return quantity

    def total(self, quantity: Decimal) -> Decimal:
        """Unrounded period total for a cumulative quantity (the F whose differences are deltas)."""
        amount = self._amount(self.priced_quantity(quantity))
        if self.minimum is not None and amount < self.minimum:
            return self.minimum
        if self.maximum is not None and amount > self.maximum:
            return self.maximum
        return amount

    def delta(self, before: Decimal | None, after: Decimal) -> Decimal:
        """total(after) - total(before); before=None (first event of the period) is total(after)."""
        if after < ZERO or (before is not None and before < ZERO):
            raise ValueError(f"cumulative quantities must be >= 0, got before={before} after={after}")
        if before is None:
            return self.total(after)
        return _sub(self.total(after), self.total(before))

    def explain(self, quantity: Decimal) -> tuple[Decimal, list[QuoteLine]]:
        """(priced quantity, lines) for a quantity; the lines add up exactly to total(quantity)."""
        _check_quantity(quantity)
        converted = quantity if self.convert is None else self.convert(quantity)
        priced = self.priced_quantity(quantity)
        lines: list[QuoteLine] = []
        if self.free_units is not None:
            used = _sub(converted, priced)
            lines.append(QuoteLine("free_units", f"{used} of {self.free_units} free units", used, ZERO, ZERO))
        lines.extend(self.core.lines(priced))
        amount = self._amount(priced)
        if self.minimum is not None and amount < self.minimum:
            lines.append(
                QuoteLine(
                    "minimum_true_up",
                    f"Minimum {self.minimum}: true-up",
                    _ONE,
                    None,
                    _sub(self.minimum, amount),
                )
            )
        elif self.maximum is not None and amount > self.maximum:
            lines.append(
                QuoteLine(
                    "maximum_cap", f"Maximum {self.maximum}: cap", _ONE, None, _sub(self.maximum, amount)
                )
            )
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
        self.rate_fraction = rate.scaleb(-2, EXACT)
        self.fixed_amount = fixed_amount or ZERO
        self.min_amount = min_amount
        self.max_amount = max_amount

    def _raw(self, value: Decimal) -> Decimal:
        return _add(_mul(value, self.rate_fraction), self.fixed_amount)

    def total(self, quantity: Decimal) -> Decimal:
        fee = self._raw(quantity)
        if self.min_amount is not None and fee < self.min_amount:
            return self.min_amount
        if self.max_amount is not None and fee > self.max_amount:
            return self.max_amount
        return fee

    def delta(self, before: Decimal | None, after: Decimal) -> Decimal:
        value = after if before is None else _sub(after, before)
        if value < ZERO:
            raise ValueError(f"percentage fees price one event's value, which must be >= 0 (got {value})")
        return self.total(value)

    def explain(self, quantity: Decimal) -> tuple[Decimal, list[QuoteLine]]:
        _check_quantity(quantity)
        lines = [
            QuoteLine(
                "percentage",
                f"{self.rate}% of {quantity}",
                quantity,
                self.rate_fraction,
                _mul(quantity, self.rate_fraction),
            )
        ]
        if self.fixed_amount:
            lines.append(
                QuoteLine("fixed_fee", "Fixed fee per event", _ONE, self.fixed_amount, self.fixed_amount)
            )
        raw = self._raw(quantity)
        if self.min_amount is not None and raw < self.min_amount:
            lines.append(
                QuoteLine(
                    "event_minimum", f"Minimum fee {self.min_amount}", _ONE, None, _sub(self.min_amount, raw)
                )
            )
        elif self.max_amount is not None and raw > self.max_amount:
            lines.append(
                QuoteLine(
                    "event_maximum", f"Maximum fee {self.max_amount}", _ONE, None, _sub(self.max_amount, raw)
                )
            )
        return quantity, lines
