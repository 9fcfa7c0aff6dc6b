"""Billing periods of a subscription, computed in the customer's time zone, returned as UTC instants.

A period is a half-open interval [start, end) of local days: it starts at local midnight of its first
day and ends at local midnight of the day after its last one, whatever the UTC offset does in between
(a March month in Europe/Paris is 31 days and 743 hours). Boundaries:

- calendar anchor: weekly periods start on Monday, monthly on the 1st, quarterly on Jan 1 / Apr 1 /
  Jul 1 / Oct 1, yearly on Jan 1;
- anniversary anchor: periods start on the subscription's start day (its local date): weekly on that
  weekday, monthly/quarterly/yearly on that day of the month, every 1/3/12 months. A day the month
  does not have (the 31st in April, Feb 29 in 2027) becomes the month's last day, and the next month
  returns to the anchor day (Jan 31 -> Feb 28 -> Mar 31 -> Apr 30), like Stripe and Lago.

Local midnight that does not exist (a DST jump at 00:00, e.g. America/Santiago) is the instant the
clocks jump (the first instant of that day); a repeated midnight is its first occurrence.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from meterstream.schemas.entities import Anchor, Interval

__all__ = ["INTERVAL_MONTHS", "Period", "Schedule", "aware", "label_window"]

# Months per period for the month-based intervals; weekly is handled in days.
INTERVAL_MONTHS: dict[str, int] = {"monthly": 1, "quarterly": 3, "yearly": 12}
_MONDAY = date(1970, 1, 5)  # a Monday: calendar weeks are counted from it


def aware(at: datetime, field: str) -> datetime:
    """`at` if it carries a UTC offset; a naive datetime is refused (it names no instant)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{field}: naive datetime {at.isoformat()} (give a UTC offset)")
    return at


@dataclass(frozen=True, slots=True)
class Period:
    """One billing period: [start, end) in UTC, its local days [first_day, end_day), its ordinal."""

    index: int  # ordinal of the period in its schedule (consecutive periods differ by 1)
    start: datetime
    end: datetime
    first_day: date
    end_day: date  # exclusive

    @property
    def days(self) -> int:
        """Local days in the period (28..31 for a month, 7 for a week, 365 or 366 for a year)."""
        return (self.end_day - self.first_day).days

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True, slots=True)
class Schedule:
    """The billing periods of one subscription: interval, anchor, time zone and anchor day."""

    interval: Interval
    anchor: Anchor
    timezone: str
    anchor_day: date  # local date of the subscription start (the anniversary day); unused for calendar

    def __post_init__(self) -> None:
        if self.interval != "weekly" and self.interval not in INTERVAL_MONTHS:
            raise ValueError(f"interval: unknown billing interval {self.interval!r}")
        if self.anchor not in ("calendar", "anniversary"):
            raise ValueError(f"billing_anchor: unknown anchor {self.anchor!r} (calendar or anniversary)")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown IANA time zone {self.timezone!r}") from None

    @classmethod
    def starting(cls, start: datetime, interval: Interval, anchor: Anchor, timezone: str) -> Schedule:
        """The schedule of a subscription that starts at `start` (its local date is the anniversary)."""
        tz = _zone(timezone)
        return cls(interval, anchor, timezone, aware(start, "start").astimezone(tz).date())

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    def local_day(self, at: datetime) -> date:
        """The customer's local date of the instant `at`."""
        return aware(at, "at").astimezone(self.zone).date()

    def day_start(self, day: date) -> datetime:
        """The UTC instant at which local `day` begins."""
        local = datetime.combine(day, time(0), tzinfo=self.zone)  # fold=0: the first midnight, or the jump
        return local.astimezone(UTC)

    def ceil_day(self, at: datetime) -> date:
        """The first local day that starts at or after `at` (`at`'s day if `at` is its midnight)."""
        day = self.local_day(at)
        return day if self.day_start(day) == at.astimezone(UTC) else day + timedelta(days=1)

    def period(self, index: int) -> Period:
        """The period with ordinal `index`."""
        first, end = self._boundary(index), self._boundary(index + 1)
        return Period(index, self.day_start(first), self.day_start(end), first, end)

    def period_containing(self, at: datetime) -> Period:
        """The period with start <= at < end."""
        day = self.local_day(aware(at, "at"))
        if self.interval == "weekly":
            index = (day - self._week_base()).days // 7
        else:
            months = INTERVAL_MONTHS[self.interval]
            index = (_month_number(day) - self._month_base()) // months
            if self._boundary(index) > day:
                index -= 1
            elif self._boundary(index + 1) <= day:
                index += 1
        return self.period(index)

    def label(self, period: Period) -> str:
        """The period's name in rated usage (`rated_usage.period`, the running totals' key): `YYYY-MM` for
        a calendar month (local: the month of its first local day), else its first local day `YYYY-MM-DD`
        (anniversary months, weeks, quarters, years). Unique within one schedule."""
        if self.interval == "monthly" and self.anchor == "calendar":
            return period.first_day.isoformat()[:7]
        return period.first_day.isoformat()

    def periods_between(self, a: datetime, b: datetime) -> list[Period]:
        """The periods that overlap [a, b), in order (empty when b <= a)."""
        if aware(b, "b") <= aware(a, "a"):
            return []
        periods = [self.period_containing(a)]
        while periods[-1].end < b:
            periods.append(self.period(periods[-1].index + 1))
        return periods

    def _week_base(self) -> date:
        return self.anchor_day if self.anchor == "anniversary" else _MONDAY

    def _month_base(self) -> int:
        return _month_number(self.anchor_day) if self.anchor == "anniversary" else 0

    def _boundary(self, index: int) -> date:
        """Local first day of period `index`."""
        if self.interval == "weekly":
            return self._week_base() + timedelta(days=7 * index)
        month = self._month_base() + index * INTERVAL_MONTHS[self.interval]
        year, month0 = divmod(month, 12)
        wanted = self.anchor_day.day if self.anchor == "anniversary" else 1
        return date(year, month0 + 1, min(wanted, calendar.monthrange(year, month0 + 1)[1]))


def _month_number(day: date) -> int:
    return day.year * 12 + day.month - 1


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone: unknown IANA time zone {name!r}") from None


def label_window(label: str, timezone: str) -> tuple[datetime, datetime]:
    """(local start of month `label`, local start of the next month) as UTC instants, in `timezone`."""
    year, month = int(label[:4]), int(label[5:7])
    clock = Schedule("monthly", "calendar", timezone, date(year, month, 1))
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return clock.day_start(date(year, month, 1)), clock.day_start(nxt)
