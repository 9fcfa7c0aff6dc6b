"""Fair shares of one amount, in whole minor units, that add up exactly (largest-remainder method). Pure.

`split(amount, weights, currency)` divides a rounded amount among named parts in proportion to their
weights (a line among its subjects by quantity): each part gets the
floor of its exact proportion in minor units, and the minor units left over go one each to the parts
with the largest remainders. So the shares add up to the amount exactly, each share is within one minor
unit of its exact proportion (floor or floor + 1), a part of weight 0 gets 0, and the shares of a
non-negative amount are never negative. Ties between equal remainders go to the part that comes first
in key order (subject ids sorted as strings), so the result does not depend on the input's order. A
negative amount (a credit) is split as its absolute value and negated, so credits mirror charges.

Weights that are all zero (a flat fee on a line nobody used) split the amount equally among all parts,
by the same rule (10.00 among three: 3.34, 3.33, 3.33).

`cell_shares(amount, quantities, cells, currency)` goes one level further, for live usage shown per day (or
per dimension): each subject's share (`subject_shares`) is split among that subject's cells by the same rule,
the part of its quantity in no cell (usage outside the days asked) keeping its own part.

`split_units(units, weights)` is the same rule in minor units with ties in the caller's order (a discount
among invoice lines, in line order). `apportion(numerators, denominator, total)` is the core: whole numbers
within one of given exact values that add up to a given total. Exact values are rationals held as
integers over a common denominator (never floats), amounts are integer minor units; results are converted
back to Decimal at the minor unit of the currency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from meterstream.rating.money import EXACT, minor_units, to_decimal

__all__ = [
    "SubjectShare",
    "apportion",
    "cell_shares",
    "from_units",
    "round_half_away",
    "split",
    "split_units",
    "subject_shares",
    "to_units",
    "whole_weights",
]


@dataclass(frozen=True, slots=True)
class SubjectShare:
    """One subject's (user's) part of an invoice line: its quantity and its share of the line's amount."""

    subject: str
    quantity: Decimal
    amount: Decimal


def to_units(amount: Decimal | int | str, currency: str, field: str = "amount") -> int:
    """`amount` in whole minor units of `currency` (12.34 EUR -> 1234); ValueError if it is not a whole number
    of minor units (round it first: the split divides a rounded amount, it does not round it)."""
    numerator, denominator = to_decimal(amount).as_integer_ratio()
    units, rest = divmod(numerator * 10 ** minor_units(currency), denominator)
    if rest:
        raise ValueError(f"{field}: {amount} is not a whole number of {currency} minor units; round it first")
    return units


def from_units(units: int, currency: str) -> Decimal:
    """Whole minor units back to a Decimal with the currency's exponent (1234 EUR -> Decimal('12.34'))."""
    return Decimal(units).scaleb(-minor_units(currency), context=EXACT)


def round_half_away(numerator: int, denominator: int) -> int:
    """numerator / denominator (denominator > 0) to the nearest whole number, a half away from zero (the
    rounding of `rating.money.round_money`), in integers."""
    magnitude = (2 * abs(numerator) + denominator) // (2 * denominator)
    return -magnitude if numerator < 0 else magnitude


def apportion(numerators: Sequence[int], denominator: int, total: int) -> list[int]:
    """Whole numbers n_i with sum(n_i) == total and floor(x_i) <= n_i <= floor(x_i) + 1 (so |n_i - x_i| < 1),
    for the exact values x_i = numerators[i] / denominator (denominator > 0: exact rationals in integers).

    Each n_i starts at floor(x_i); the `total - sum(floor)` units left go one each to the largest
    fractional parts, equal parts in index order (earlier first). A value with no fractional part never
    gets one. `total` must lie within what that allows: round(sum(x_i)) always does, and so does sum(x_i)
    when it is whole (ValueError otherwise).
    """
    if denominator <= 0:
        raise ValueError(f"denominator: must be positive, got {denominator}")
    floors = [n // denominator for n in numerators]
    remainders = [n % denominator for n in numerators]
    left = total - sum(floors)
    if left:
        candidates = sorted((i for i, r in enumerate(remainders) if r), key=lambda i: (-remainders[i], i))
        if not 0 <= left <= len(candidates):
            raise ValueError(
                f"total: {total} cannot be apportioned within one unit of values summing to "
                f"{sum(numerators)}/{denominator}"
            )
        for i in candidates[:left]:
            floors[i] += 1
    return floors


def split(amount: Decimal | int | str, weights: Mapping[str, Decimal | int | str], currency: str) -> dict[str, Decimal]:
    """`amount` (already rounded to the currency's minor unit) divided among the keys of `weights` in proportion
    to them; keys in sorted order. All weights zero: equal parts. See the module docstring for the rule.

    ValueError naming the field: a negative weight (`weights[<key>]`), no parts for a non-zero amount
    (`weights`), an amount that is not whole minor units (`amount`).
    """
    units = to_units(amount, currency)
    keys = sorted(weights)
    values: list[Decimal] = []
    for key in keys:
        weight = to_decimal(weights[key])
        if weight < 0:
            raise ValueError(f"weights[{key}]: must not be negative, got {weight}")
        values.append(weight)
    if not keys and units:
        raise ValueError(f"weights: no parts to split {amount} {currency} among")
    shares = split_units(units, whole_weights(values))
    return {key: from_units(share, currency) for key, share in zip(keys, shares, strict=True)}


def whole_weights(values: Sequence[Decimal]) -> list[int]:
    """Decimal weights as integers in the same proportions (all scaled by 10^k, k their most decimals)."""
    digits = max((-v.as_tuple().exponent for v in values if v), default=0)  # type: ignore[operator]
    scale = max(digits, 0)
    return [int(v.scaleb(scale, context=EXACT)) for v in values]


def split_units(units: int, weights: Sequence[int]) -> list[int]:
    """`units` (whole minor units) divided in proportion to integer `weights` (non-negative), ties in the order
    given: the rule of `split`, for callers that keep their own order (a discount among lines in line order)."""
    if not weights:
        return []
    if not any(weights):  # a flat amount nobody used: equal parts
        weights = [1] * len(weights)
    whole = sum(weights)
    magnitude = abs(units)
    shares = apportion([magnitude * w for w in weights], whole, magnitude)
    return [-share for share in shares] if units < 0 else shares


def subject_shares(
    amount: Decimal | int | str, quantities: Mapping[str, Decimal | int | str], currency: str
) -> list[SubjectShare]:
    """The per-subject (per-user) section of one invoice line: each subject's share of the line's `amount`
    in proportion to its quantity (`split`), in subject order. The shares add up to the line exactly and
    are never negative for a non-negative line, whatever the pricing model (tiers, volume, package) made
    of the total. A line with quantity but no subjects raises (`weights`): attribute usage first.
    """
    shares = split(amount, quantities, currency)
    return [SubjectShare(subject, to_decimal(quantities[subject]), shares[subject]) for subject in shares]


def cell_shares(
    amount: Decimal | int | str,
    quantities: Mapping[str, Decimal | int | str],
    cells: Mapping[str, Sequence[Decimal | int | str]],
    currency: str,
) -> dict[str, list[Decimal]]:
    """Each subject's share of `amount` (`subject_shares`, by its quantity in `quantities`), split among that
    subject's cells (`cells[subject]`: the quantities of its usage per day, per dimension... that were asked
    for) in proportion to their quantities, by the same rule with ties in cell order. The subject's quantity
    in no cell (`quantities[subject]` minus its cells: usage outside the range asked) takes its own part, not
    returned. So a subject's cells add up to its share exactly when they cover all its quantity, and the
    shares of all subjects add up to `amount` exactly.

    ValueError naming the field: a negative quantity (`quantities[<s>]`, `cells[<s>]`), cells adding up to
    more than the subject's quantity (`cells[<s>]`), a subject of `cells` not in `quantities`.
    """
    shares = {s.subject: s.amount for s in subject_shares(amount, quantities, currency)}
    out: dict[str, list[Decimal]] = {}
    for subject, values in cells.items():
        if subject not in shares:
            raise ValueError(f"cells[{subject}]: not a subject of quantities")
        parts = [to_decimal(v) for v in values]
        if any(v < 0 for v in parts):
            raise ValueError(f"cells[{subject}]: must not be negative")
        rest = to_decimal(quantities[subject])
        for v in parts:
            rest = EXACT.subtract(rest, v)
        if rest < 0:
            raise ValueError(f"cells[{subject}]: add up to more than the subject's quantity {quantities[subject]}")
        weights = whole_weights([*parts, rest] if rest else parts)  # no rest: the cells hold all (even 0 of 0)
        units = split_units(to_units(shares[subject], currency), weights)
        out[subject] = [from_units(u, currency) for u in units[: len(parts)]]
    return out
