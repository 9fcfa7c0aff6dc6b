"""Usage periods and grant expirations of entitlements, as OpenMeter computes them (pure).

An interval is `(count, unit)` with unit `hour`, `day`, `week`, `month` or `year`, written `DAY`, `WEEK`, `MONTH`,
`YEAR` or an ISO 8601 duration of one component (`PT6H`, `P2D`, `P2W`, `P3M`, `P1Y`). Two kinds of arithmetic, as
OpenMeter has them:

- **usage period boundaries** are `anchor + n·interval` for every integer n, each computed from the anchor (never
  chained), months and years with the day **clamped** to the month's last day (anchor Jan 31: Feb 28 or 29, Mar 31,
  Apr 30...); a period is `[from, to)`;
- **resets** (`Timeline`) start a new period at their minute, anchored there unless they keep the anchor;
- **grant expirations** are `effectiveAt + count·unit` with the overflow **carried** into the next month, as Go's
  `time.AddDate` does (Jan 31 + 1 MONTH = Mar 3, or Mar 2 in a leap year).
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

Interval = tuple[int, str]  # (count, unit)

_NAMES = {"DAY": (1, "day"), "WEEK": (1, "week"), "MONTH": (1, "month"), "YEAR": (1, "year")}
_ISO = re.compile(r"P(?:(\d{1,4})([DWMY])|T(\d{1,5})H)")
_ISO_UNIT = {"D": "day", "W": "week", "M": "month", "Y": "year"}
_UNIT_ISO = {"day": "D", "week": "W", "month": "M", "year": "Y"}
_FIXED = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
DURATIONS = ("HOUR", "DAY", "WEEK", "MONTH", "YEAR")  # a grant expiration's units


def parse_interval(text: str) -> Interval:
    """`DAY`/`WEEK`/`MONTH`/`YEAR` or a one-component ISO 8601 duration of at least one hour; ValueError otherwise."""
    named = _NAMES.get(text)
    if named is not None:
        return named
    m = _ISO.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not DAY, WEEK, MONTH, YEAR or an ISO 8601 duration such as PT6H, P2W or P3M")
    count, unit = (int(m.group(1)), _ISO_UNIT[m.group(2)]) if m.group(1) else (int(m.group(3)), "hour")
    if count < 1:
        raise ValueError(f"{text!r}: the interval must be at least one hour")
    return count, unit


def interval_name(interval: Interval) -> str:
    """OpenMeter's `interval`: the name when it is one day, week, month or year, else the ISO duration."""
    for name, value in _NAMES.items():
        if value == interval:
            return name
    return interval_iso(interval)


def interval_iso(interval: Interval) -> str:
    count, unit = interval
    return f"PT{count}H" if unit == "hour" else f"P{count}{_UNIT_ISO[unit]}"


def _clamped_months(anchor: datetime, months: int) -> datetime:
    year, month0 = divmod(anchor.month - 1 + months, 12)
    year += anchor.year
    day = min(anchor.day, calendar.monthrange(year, month0 + 1)[1])
    return anchor.replace(year=year, month=month0 + 1, day=day)


def boundary(anchor: datetime, interval: Interval, n: int) -> datetime:
    """The n-th period boundary from the anchor (n may be negative): `anchor + n·interval`, months clamped."""
    count, unit = interval
    if unit in _FIXED:
        return anchor + _FIXED[unit] * (count * n)
    return _clamped_months(anchor, count * n * (12 if unit == "year" else 1))


def period_at(anchor: datetime, interval: Interval, at: datetime) -> tuple[datetime, datetime]:
    """The usage period `[from, to)` that holds `at`."""
    count, unit = interval
    if unit in _FIXED:
        n = (at - anchor) // (_FIXED[unit] * count)
    else:
        months = (at.year - anchor.year) * 12 + at.month - anchor.month
        n = months // (count * (12 if unit == "year" else 1))
    while boundary(anchor, interval, n) > at:
        n -= 1
    while boundary(anchor, interval, n + 1) <= at:
        n += 1
    return boundary(anchor, interval, n), boundary(anchor, interval, n + 1)


def periods_between(
    anchor: datetime, interval: Interval, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The usage periods from the one holding `start` to the one holding `end`, the first cut to begin at `start`."""
    to = period_at(anchor, interval, start)[1]
    out = [(start, to)]
    while to <= end:
        nxt = period_at(anchor, interval, to)
        out.append(nxt)
        to = nxt[1]
    return out


@dataclass(frozen=True)
class Timeline:
    """An entitlement's usage periods: from `measureUsageFrom` with its anchor, then from each reset with the anchor
    that reset set (its own time, or the one before when it kept the anchor). A reset starts a new period at once; the
    period that held it ends there."""

    interval: Interval
    segments: tuple[tuple[datetime, datetime], ...]  # (start, anchor), in time order; the first starts measuring

    @property
    def start(self) -> datetime:
        return self.segments[0][0]

    @property
    def last_reset(self) -> datetime:
        """The start of the last segment: the last reset, else the start of measuring (OpenMeter's `lastReset`)."""
        return self.segments[-1][0]

    def period_at(self, at: datetime) -> tuple[datetime, datetime]:
        """The usage period `[from, to)` that holds `at` (before the start of measuring: the first one)."""
        i = max(bisect_right([s for s, _ in self.segments], at) - 1, 0)
        seg_start, anchor = self.segments[i]
        begin, end = period_at(anchor, self.interval, max(at, seg_start))
        if i + 1 < len(self.segments):
            end = min(end, self.segments[i + 1][0])
        return max(begin, seg_start), end

    def periods_between(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The periods from the one holding `start` to the one holding `end`, the first cut to begin at `start`."""
        to = self.period_at(start)[1]
        out = [(start, to)]
        while to <= end:
            nxt = self.period_at(to)
            out.append(nxt)
            to = nxt[1]
        return out

    def resets(self) -> tuple[datetime, ...]:
        """The times of the resets (the segments' starts after the first)."""
        return tuple(s for s, _ in self.segments[1:])


WINDOW_SIZES = ("MINUTE", "HOUR", "DAY", "MONTH")


def windows(start: datetime, end: datetime, size: str, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """The windows of `size` (MINUTE, HOUR, DAY or MONTH; days and months from the midnights of `zone`, so a day is
    23 or 25 hours at a daylight-saving change) that meet `[start, end)`, in UTC, in order."""
    local = start.astimezone(zone)
    if size == "MINUTE":
        first = minute(start)
    elif size == "HOUR":
        first = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    elif size == "DAY":
        first = datetime.combine(local.date(), time(0), zone).astimezone(UTC)
    else:
        first = datetime.combine(local.date().replace(day=1), time(0), zone).astimezone(UTC)
    out = []
    w0 = first
    while w0 < end:
        if size in ("MINUTE", "HOUR"):
            w1 = w0 + (timedelta(minutes=1) if size == "MINUTE" else timedelta(hours=1))
        else:
            day = w0.astimezone(zone).date()
            nxt = day + timedelta(days=1) if size == "DAY" else (day.replace(day=28) + timedelta(days=4)).replace(day=1)
            w1 = datetime.combine(nxt, time(0), zone).astimezone(UTC)
        out.append((w0, w1))
        w0 = w1
    return out


def expires_at(effective_at: datetime, duration: str, count: int) -> datetime:
    """`effectiveAt + count·duration` as Go's `AddDate` computes it (a day past the month's end carries over)."""
    if duration == "HOUR":
        return effective_at + timedelta(hours=count)
    if duration in ("DAY", "WEEK"):
        return effective_at + timedelta(days=count * (7 if duration == "WEEK" else 1))
    months = count * (12 if duration == "YEAR" else 1)
    year, month0 = divmod(effective_at.month - 1 + months, 12)
    first = effective_at.replace(year=effective_at.year + year, month=month0 + 1, day=1)
    return first + timedelta(days=effective_at.day - 1)


def minute(at: datetime) -> datetime:
    """`at` in UTC truncated to the minute (OpenMeter truncates anchors, grant times and resets)."""
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def minute_up(at: datetime) -> datetime:
    """`at` in UTC rounded up to the next full minute (a value is computed as of that minute)."""
    down = minute(at)
    return down if down == at else down + timedelta(minutes=1)


__all__ = [
    "DURATIONS",
    "Interval",
    "Timeline",
    "boundary",
    "expires_at",
    "interval_iso",
    "interval_name",
    "minute",
    "minute_up",
    "parse_interval",
    "period_at",
    "periods_between",
]  # fmt: skip
