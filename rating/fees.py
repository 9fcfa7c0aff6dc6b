"""Fixed fees: proration of recurring fees, one-time fees and installment plans. Pure functions.

Periods are half-open intervals [start, end). Proration rules:
- "second": active seconds / period seconds (exact to the microsecond).
- "day": active calendar days / period days, where a started day counts as a whole day (a customer
  active from the 10th at 15:00 pays for the 10th). Dates are taken as given (pass UTC datetimes or dates).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Context, Decimal
from typing import TYPE_CHECKING, Literal

from meterstream.rating.money import EXACT, ROUNDING, ZERO, minor_units, round_money, to_decimal

if TYPE_CHECKING:
    from meterstream.rating.price import FlatPrice

__all__ = ["flat_charge", "installment_amounts", "prorate", "proration_factor"]

ProrationRule = Literal["day", "second"]

_ONE = Decimal(1)
_MICROSECOND = timedelta(microseconds=1)
# A proration fraction such as 7/30 does not terminate; keep 34 significant digits (far below any
# minor unit) and round to money once, at the end, like everything else.
_FRACTION = Context(prec=34)


def _day_floor(moment: date | datetime) -> date:
    return moment.date() if isinstance(moment, datetime) else moment


def _day_ceil(moment: date | datetime) -> date:
    if isinstance(moment, datetime):
        day = moment.date()
        return day if moment.time() == datetime.min.time() else day + timedelta(days=1)
    return moment


def proration_factor(
    period_start: date | datetime,
    period_end: date | datetime,
    active_from: date | datetime | None = None,
    active_to: date | datetime | None = None,
    rule: ProrationRule = "day",
) -> Decimal:
    """Share of the period [period_start, period_end) during which the subscription was active (0..1).

    `active_from` / `active_to` default to the period bounds (a full period gives exactly 1).
    """
    start = period_start if active_from is None else max(period_start, active_from)
    end = period_end if active_to is None else min(period_end, active_to)
    if rule == "second":
        total = (period_end - period_start) // _MICROSECOND
        active = max(0, (end - start) // _MICROSECOND)
    elif rule == "day":
        total = (_day_ceil(period_end) - _day_floor(period_start)).days
        active = max(0, (_day_ceil(end) - _day_floor(start)).days)
    else:
        raise ValueError(f"rule: unknown proration rule {rule!r} (expected 'day' or 'second')")
    if total <= 0:
        raise ValueError("period_end must be after period_start")
    if active >= total:
        return _ONE
    return _FRACTION.divide(Decimal(active), Decimal(total))


def prorate(
    amount: Decimal,
    period_start: date | datetime,
    period_end: date | datetime,
    active_from: date | datetime | None = None,
    active_to: date | datetime | None = None,
    rule: ProrationRule = "day",
) -> Decimal:
    """Unrounded share of a recurring `amount` for a partially active period (see `proration_factor`)."""
    factor = proration_factor(period_start, period_end, active_from, active_to, rule)
    return _FRACTION.multiply(to_decimal(amount), factor)


def installment_amounts(total: Decimal, count: int, currency: str) -> tuple[Decimal, ...]:
    """Split `total` into `count` installments in whole minor units; the remainder goes on the last one.

    100.00 USD in 3 -> (33.33, 33.33, 33.34). The total is rounded to the minor unit first.
    """
    if count < 1:
        raise ValueError("installments: must be at least 1")
    rounded = round_money(to_decimal(total), currency)
    quantum = Decimal(1).scaleb(-minor_units(currency))
    each = _FRACTION.divide(rounded, Decimal(count)).quantize(quantum, ROUND_DOWN, ROUNDING)
    last = EXACT.subtract(rounded, EXACT.multiply(each, Decimal(count - 1)))
    return (each,) * (count - 1) + (last,)


def flat_charge(price: FlatPrice, period_index: int = 0, proration: Decimal = _ONE) -> Decimal:
    """Unrounded amount a flat price charges in the `period_index`-th period of a subscription (0 = first).

    Recurring fees charge `amount x proration` every period (`proration` from `proration_factor`); whether
    that is invoiced at the start (in_advance) or the end (in_arrears) of the period is `price.billing`.
    One-time fees charge in period 0, or one installment per period when `installments` > 1.
    """
    if period_index < 0:
        raise ValueError("period_index: must be >= 0")
    if price.cadence == "recurring":
        return EXACT.multiply(price.amount, to_decimal(proration))
    schedule = installment_amounts(price.amount, price.installments, price.currency)
    return schedule[period_index] if period_index < len(schedule) else ZERO
