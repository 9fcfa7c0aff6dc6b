"""Day-based proration (docs/billing.md): which local days a phase pays for, and the prorated amount.

Which days count. A period of N local days charges a recurring fee N/N; a part of it charges d/N, d the
local days charged. Every local day on which the subscription was active (for any part of it) is charged
once, to the last phase active during that day:
- the day of an upgrade, downgrade or other phase change belongs to the new phase (Lago: an upgrade on
  January 15th charges the old plan 14/31 and the new plan 17/31);
- the day of a cancellation is charged (it was used; Lago charges May 20 through June 20 = 32 days for a
  subscription started May 20 and terminated June 20);
- a phase that starts and ends on one day, followed by another phase that day, charges nothing.
Days are the customer's local days (the billing time zone), not UTC days and not seconds.

Rounding. The amount of the days [a, b) of a period (offsets from its first day) is
    round(fee x b / N) - round(fee x a / N)
with round() to the currency's minor unit, half away from zero (ROUND_HALF_UP), computed exactly (no
intermediate rounding). So each piece is rounded once, a piece is within one minor unit of its own
rounded share fee x (b - a) / N, and the pieces of one period at one price always add up to the full
fee exactly, however the period is split (the rounding differences cancel: the cumulative sums
telescope). Published examples (Lago, Stripe) give the same figures (tests/billing/test_billing_proration.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from meterstream.billing.periods import Schedule
from meterstream.rating.money import EXACT, minor_units, to_decimal

__all__ = ["DaySpan", "day_spans", "prorated", "round_share"]


@dataclass(frozen=True, slots=True)
class DaySpan:
    """Local days [first, end) charged to one phase; end None: open-ended."""

    first: date
    end: date | None

    def clip(self, first: date, end: date) -> tuple[date, date] | None:
        """The charged days within [first, end), or None when there are none."""
        lo = max(self.first, first)
        hi = end if self.end is None else min(self.end, end)
        return (lo, hi) if lo < hi else None


def day_spans(intervals: Sequence[tuple[datetime, datetime | None]], schedule: Schedule) -> list[DaySpan]:
    """The local days charged to each of `intervals` ([start, end) instants, ordered, non-overlapping).

    A day goes to the last interval active during it (see the module docstring)."""
    spans = []
    for i, (start, end) in enumerate(intervals):
        first = schedule.local_day(start)
        last = None if end is None else schedule.ceil_day(end)
        if i + 1 < len(intervals):
            following = schedule.local_day(intervals[i + 1][0])
            last = following if last is None else min(last, following)
        spans.append(DaySpan(first, first if last is not None and last < first else last))
    return spans


def round_share(amount: Decimal, numerator: int, denominator: int, currency: str) -> Decimal:
    """amount x numerator / denominator rounded once to the currency's minor unit, half away from zero.

    Exact: the quotient and remainder are integers/decimals computed without rounding, so no value
    close to a half is ever rounded twice."""
    if denominator <= 0:
        raise ValueError("denominator: must be positive")
    digits = minor_units(currency)
    scaled = EXACT.multiply(EXACT.multiply(to_decimal(amount), Decimal(numerator)), Decimal(1).scaleb(digits))
    quotient, remainder = EXACT.divmod(EXACT.abs(scaled), Decimal(denominator))
    if EXACT.multiply(remainder, 2) >= denominator:
        quotient = EXACT.add(quotient, 1)
    units = EXACT.minus(quotient) if scaled < 0 else quotient
    return EXACT.multiply(units, Decimal(1).scaleb(-digits))


def prorated(amount: Decimal, first: int, end: int, days: int, currency: str) -> Decimal:
    """The amount of days [first, end) of a `days`-day period for a fee of `amount` per period (rounded).

    round(amount x end / days) - round(amount x first / days): pieces of one period add up exactly."""
    if not 0 <= first <= end <= days:
        raise ValueError(f"days: need 0 <= first ({first}) <= end ({end}) <= period days ({days})")
    return EXACT.subtract(round_share(amount, end, days, currency), round_share(amount, first, days, currency))
