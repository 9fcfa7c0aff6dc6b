"""Coupons and discounts on one invoice, before tax (docs/taxes.md#discounts). Pure: no I/O, no clock.

A `Coupon` is percentage (`percent_off`, 10 = 10 %) or fixed (`amount_off` in the invoice currency), lasts
`once`, `repeating` (`duration_periods` billing periods) or `forever`, and applies to the whole invoice or
only to lines whose code (meter or charge code) is in `applies_to`. A `CouponUse` is a coupon as applied to
one customer: how many invoices it was already applied to (`periods_used`) and, for a fixed coupon used
once, what is left of it (`amount_remaining`); the close keeps that state and passes it in.

The rules (Lago's coupon rules, docs.getlago.com/guide/coupons):
- order: coupons limited to named lines first, then whole-invoice coupons; within each group in the order
  given, which is the order the coupons were applied to the customer; each coupon sees the amounts left
  by the ones before it (two 10 % coupons take 19 %);
- a coupon discounts only lines with a positive amount left (credits and negative adjustments are not
  discounted) and never more than the invoice's running subtotal, so discounts never make the subtotal
  negative;
- percentage: percent_off x the eligible amount, rounded once to the minor unit, half away from zero;
- fixed, `once`: the unused rest carries over to the next invoices until it is used up (`amount_remaining`);
  fixed, `repeating` or `forever`: the unused rest of a period is lost;
- a billing period counts as used whenever the coupon was active on the invoice, even if it took nothing
  (the duration is in billing periods, not in redemptions);
- each discount is allocated to the lines it applies to in proportion to their amounts left, by largest
  remainder in minor units (`allocation.split_units`; equal remainders: line order), so the per-line parts
  add up to the discount and tax can be computed per line on the discounted amount.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol

from meterstream.billing.allocation import from_units, round_half_away, split_units, to_units
from meterstream.rating.money import EXACT, minor_units, to_decimal

__all__ = ["Coupon", "CouponUse", "DiscountApplied", "DiscountResult", "apply_discounts", "discount_units", "is_active"]

DiscountKind = Literal["percentage", "fixed"]
Duration = Literal["once", "repeating", "forever"]


@dataclass(frozen=True, slots=True)
class Coupon:
    """A discount definition. ValueError naming the field when it is inconsistent."""

    code: str
    kind: DiscountKind
    percent_off: Decimal | None = None  # percentage coupons: 0 < percent_off <= 100 (10 = 10 %)
    amount_off: Decimal | None = None  # fixed coupons: in `currency`, whole minor units
    currency: str | None = None  # fixed coupons: must be the invoice's currency
    duration: Duration = "once"
    duration_periods: int | None = None  # repeating coupons: how many billing periods
    applies_to: frozenset[str] | None = None  # line codes (meters, charge codes); None: every line
    description: str = ""

    def __post_init__(self) -> None:
        if not self.code:
            raise ValueError("code: a coupon needs a code")
        if self.kind == "percentage":
            if self.percent_off is None or self.amount_off is not None:
                raise ValueError("percent_off: a percentage coupon has percent_off and no amount_off")
            p = to_decimal(self.percent_off)
            if not 0 < p <= 100:
                raise ValueError(f"percent_off: must be more than 0 and at most 100 (10 = 10 %), got {p}")
            object.__setattr__(self, "percent_off", p)
        elif self.kind == "fixed":
            if self.amount_off is None or self.percent_off is not None:
                raise ValueError("amount_off: a fixed coupon has amount_off and no percent_off")
            if self.currency is None:
                raise ValueError("currency: a fixed coupon needs the currency of its amount_off")
            minor_units(self.currency)  # an unknown currency raises
            amount = to_decimal(self.amount_off)
            if amount <= 0:
                raise ValueError(f"amount_off: must be positive, got {amount}")
            to_units(amount, self.currency, "amount_off")
            object.__setattr__(self, "amount_off", amount)
        else:
            raise ValueError(f"kind: must be 'percentage' or 'fixed', got {self.kind!r}")
        if self.duration == "repeating":
            if self.duration_periods is None or self.duration_periods < 1:
                raise ValueError("duration_periods: a repeating coupon lasts at least 1 billing period")
        elif self.duration in ("once", "forever"):
            if self.duration_periods is not None:
                raise ValueError(f"duration_periods: only for repeating coupons, not {self.duration!r}")
        else:
            raise ValueError(f"duration: must be 'once', 'repeating' or 'forever', got {self.duration!r}")
        if self.applies_to is not None:
            if not self.applies_to:
                raise ValueError("applies_to: name at least one line code, or None for the whole invoice")
            object.__setattr__(self, "applies_to", frozenset(self.applies_to))

    @property
    def carries_over(self) -> bool:
        """A fixed coupon used once: its unused rest carries over to the next invoices."""
        return self.kind == "fixed" and self.duration == "once"


@dataclass(frozen=True, slots=True)
class CouponUse:
    """A coupon applied to one customer, with what it has used so far (the close keeps this state)."""

    coupon: Coupon
    periods_used: int = 0  # invoices it was active on before this one
    amount_remaining: Decimal | None = None  # fixed + once: what is left; None: all of amount_off

    def __post_init__(self) -> None:
        if self.periods_used < 0:
            raise ValueError(f"periods_used: must not be negative, got {self.periods_used}")
        if self.amount_remaining is not None:
            if not self.coupon.carries_over:
                raise ValueError("amount_remaining: only a fixed coupon used once keeps a remaining amount")
            left = to_decimal(self.amount_remaining)
            assert self.coupon.amount_off is not None and self.coupon.currency is not None
            if not 0 <= left <= self.coupon.amount_off:
                raise ValueError(f"amount_remaining: must be between 0 and amount_off, got {left}")
            to_units(left, self.coupon.currency, "amount_remaining")
            object.__setattr__(self, "amount_remaining", left)


class DiscountableLine(Protocol):
    """What a discount needs of an invoice line: a unique key, the code `applies_to` names, the amount."""

    @property
    def key(self) -> str: ...

    @property
    def code(self) -> str: ...

    @property
    def amount(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class DiscountApplied:
    """One coupon on this invoice (field names of the invoice document's `discounts`), and its new state."""

    code: str
    description: str
    kind: DiscountKind
    percentage: Decimal | None  # a fraction: 0.10 is 10 % (percent_off / 100)
    amount: Decimal  # what it takes off this invoice: positive or 0, rounded to the minor unit
    periods_remaining: int | None  # invoices it still applies to after this one; None: forever / until used up
    periods_used: int  # to keep: invoices it was active on, this one included
    amount_remaining: Decimal | None  # to keep: fixed + once, what is left after this invoice
    exhausted: bool  # True: no further invoice gets it
    lines: dict[str, Decimal] = field(default_factory=dict)  # line key -> its part of `amount` (adds up)


@dataclass(frozen=True, slots=True)
class DiscountResult:
    discounts: list[DiscountApplied]  # every active coupon, in the order applied (amount may be 0)
    line_discounts: dict[str, Decimal]  # line key -> the sum of the discounts on it
    discount_total: Decimal


def is_active(use: CouponUse) -> bool:
    """Does the coupon apply to the next invoice? once: until used (fixed: until its amount is used up);
    repeating: for `duration_periods` invoices; forever: always."""
    coupon = use.coupon
    if coupon.carries_over:
        return use.amount_remaining is None or use.amount_remaining > 0
    if coupon.duration == "once":
        return use.periods_used == 0
    if coupon.duration == "repeating":
        assert coupon.duration_periods is not None
        return use.periods_used < coupon.duration_periods
    return True


def apply_discounts(lines: Sequence[DiscountableLine], uses: Sequence[CouponUse], currency: str) -> DiscountResult:
    """The discounts of one invoice: each active coupon's amount, its allocation to lines, and its new state.

    `lines` have unique keys and amounts in whole minor units of `currency` (rounded lines). Rules: module
    docstring. ValueError naming the field: a fixed coupon in another currency (`coupons[i].currency`),
    duplicate line keys (`lines[i].key`).
    """
    amounts = [to_units(line.amount, currency, f"lines[{i}].amount") for i, line in enumerate(lines)]
    applied, per_line = discount_units(lines, amounts, uses, currency)
    return DiscountResult(
        discounts=applied,
        line_discounts={k: from_units(v, currency) for k, v in per_line.items()},
        discount_total=from_units(sum(per_line.values()), currency),
    )


def discount_units(
    lines: Sequence[DiscountableLine], amounts: Sequence[int], uses: Sequence[CouponUse], currency: str
) -> tuple[list[DiscountApplied], dict[str, int]]:
    """`apply_discounts` on amounts already in minor units (`amounts[i]` is lines[i]'s): the discounts, and
    each line's discount in minor units (line key -> units, every line, in line order)."""
    left: dict[str, int] = {}
    codes: dict[str, str] = {}
    for i, line in enumerate(lines):
        if line.key in left:
            raise ValueError(f"lines[{i}].key: duplicate line key {line.key!r}")
        left[line.key] = max(amounts[i], 0)
        codes[line.key] = line.code
    per_line: dict[str, int] = dict.fromkeys(left, 0)
    if not uses:
        return [], per_line
    net = sum(amounts)  # the running subtotal in minor units (negative lines included)
    for i, use in enumerate(uses):
        if use.coupon.kind == "fixed" and use.coupon.currency != currency:
            raise ValueError(f"coupons[{i}].currency: {use.coupon.currency} coupon on a {currency} invoice")
    active = [u for u in uses if is_active(u)]
    ordered = [u for u in active if u.coupon.applies_to is not None] + [
        u for u in active if u.coupon.applies_to is None
    ]
    applied: list[DiscountApplied] = []
    for use in ordered:
        coupon = use.coupon
        eligible = {
            k: v for k, v in left.items() if v > 0 and (coupon.applies_to is None or codes[k] in coupon.applies_to)
        }
        base = sum(eligible.values())
        if coupon.kind == "percentage":
            assert coupon.percent_off is not None
            numerator, denominator = coupon.percent_off.as_integer_ratio()
            wanted = round_half_away(base * numerator, denominator * 100)
        else:
            offered = coupon.amount_off if use.amount_remaining is None else use.amount_remaining
            assert offered is not None
            wanted = to_units(offered, currency)
        units = max(0, min(wanted, base, net))
        parts = split_units(units, list(eligible.values()))
        line_parts: dict[str, Decimal] = {}
        for key, part_units in zip(eligible, parts, strict=True):
            left[key] -= part_units
            per_line[key] += part_units
            if part_units:
                line_parts[key] = from_units(part_units, currency)
        net -= units
        applied.append(_applied(use, units, currency, line_parts))
    return applied, per_line


def _applied(use: CouponUse, units: int, currency: str, line_parts: dict[str, Decimal]) -> DiscountApplied:
    coupon = use.coupon
    used = use.periods_used + 1
    remaining: Decimal | None = None
    periods_remaining: int | None = None
    if coupon.carries_over:
        offered = coupon.amount_off if use.amount_remaining is None else use.amount_remaining
        assert offered is not None
        remaining = from_units(to_units(offered, currency) - units, currency)
        exhausted = remaining == 0
    elif coupon.duration == "once":
        periods_remaining, exhausted = 0, True
    elif coupon.duration == "repeating":
        assert coupon.duration_periods is not None
        periods_remaining = coupon.duration_periods - used
        exhausted = periods_remaining == 0
    else:
        exhausted = False
    percentage = None if coupon.percent_off is None else EXACT.divide(coupon.percent_off, Decimal(100))
    return DiscountApplied(
        code=coupon.code,
        description=coupon.description or coupon.code,
        kind=coupon.kind,
        percentage=percentage,
        amount=from_units(units, currency),
        periods_remaining=periods_remaining,
        periods_used=used,
        amount_remaining=remaining,
        exhausted=exhausted,
        lines=line_parts,
    )
