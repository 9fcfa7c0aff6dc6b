"""Time-of-use bands in the plan's IANA time zone, and splitting usage at band changes.

Rules (see docs/telecom.md):

* Each local calendar day has a day type: ``holiday`` if the date is listed in
  ``holidays`` (this wins over the weekday), else ``mon`` .. ``sun``.  The periods
  for that day type say which band runs from which local time; time no period
  claims belongs to the default band.
* Band boundaries are local wall-clock times converted to real instants with
  zoneinfo, so a call across a DST change is split at the right instant and its
  parts add up to its real duration.  A boundary at a local time that the clocks
  skip (spring forward) takes effect as Python's ``fold=0`` reads it, i.e. one
  DST offset later; an ambiguous local time (autumn) means its first occurrence.
* Adjacent pieces in the same band are merged, so local midnight only splits a
  call when the band actually changes there (e.g. Friday off-peak -> Saturday
  weekend).

For speed the band timeline of each UTC day is built once (in epoch
microseconds) and looked up with ``bisect``.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
DAY_US = 86_400_000_000
MILLION = Decimal(1_000_000)
DAY_TYPES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun", "holiday")
HOLIDAY = 7

DayTable = tuple[tuple[int, str], ...]  # (seconds after local midnight, band), first at 0


def day_tables(periods: Iterable[tuple[str, Sequence[str], int, int]], default: str) -> tuple[DayTable, ...]:
    """Per day type (mon..sun, holiday), the band changes of one local day.

    ``periods`` are ``(band, day types, start_s, end_s)``; gaps get ``default``.
    """
    per_day: list[list[tuple[int, int, str]]] = [[] for _ in DAY_TYPES]
    for band, days, start, end in periods:
        for d in days:
            per_day[DAY_TYPES.index(d)].append((start, end, band))
    tables = []
    for slots in per_day:
        changes: list[tuple[int, str]] = []
        cursor = 0
        for start, end, band in sorted(slots):
            if start > cursor:
                changes.append((cursor, default))
            changes.append((start, band))
            cursor = end
        if cursor < 86400:
            changes.append((cursor, default))
        merged: list[tuple[int, str]] = []
        for at, band in changes:
            if not merged or merged[-1][1] != band:
                merged.append((at, band))
        tables.append(tuple(merged))
    return tuple(tables)


def to_us(moment: datetime) -> int:
    """Epoch microseconds of an aware datetime (exact integer arithmetic)."""
    return (moment - EPOCH) // ONE_US


class Schedule:
    """The band timeline of one plan; answers "which band at t" and splits usage."""

    __slots__ = ("_cache", "_holidays", "_tables", "_tz", "spans")

    def __init__(self, tz: ZoneInfo, tables: tuple[DayTable, ...], holidays: Iterable[date]) -> None:
        self._tz = tz
        self._tables = tables
        self._holidays = frozenset(holidays)
        self._cache: dict[int, tuple[list[int], list[int], list[str]]] = {}
        # UTC day -> the same intervals as timedeltas since the epoch (for the rater's memo path)
        self.spans: dict[int, tuple[list[timedelta], list[timedelta], list[str]]] = {}

    def _local_changes(self, day: date) -> list[tuple[int, str]]:
        kind = HOLIDAY if day in self._holidays else day.weekday()
        midnight = datetime(day.year, day.month, day.day, tzinfo=self._tz)
        return [(to_us(midnight + timedelta(seconds=s)), band) for s, band in self._tables[kind]]

    def day_spans(self, k: int) -> tuple[list[timedelta], list[timedelta], list[str]]:
        """The band intervals of UTC day ``k`` (days since the epoch) as timedeltas since the epoch:
        starts, ends, bands (exact: the same microseconds as ``interval`` uses)."""
        found = self.spans.get(k)
        if found is None:
            starts, ends, bands = self._utc_day(k)
            if len(self.spans) > 4096:
                self.spans.clear()
            found = self.spans[k] = (
                [timedelta(microseconds=us) for us in starts],
                [timedelta(microseconds=us) for us in ends],
                bands,
            )
        return found

    def _utc_day(self, k: int) -> tuple[list[int], list[int], list[str]]:
        found = self._cache.get(k)
        if found is not None:
            return found
        lo, hi = k * DAY_US, (k + 1) * DAY_US
        first = (EPOCH + timedelta(microseconds=lo)).astimezone(self._tz).date() - timedelta(days=1)
        last = (EPOCH + timedelta(microseconds=hi)).astimezone(self._tz).date() + timedelta(days=1)
        changes: list[tuple[int, str]] = []
        day = first
        while day <= last:
            for at, band in self._local_changes(day):
                if changes and at < changes[-1][0]:
                    at = changes[-1][0]  # a skipped local time: keep the timeline monotonic
                changes.append((at, band))
            day += timedelta(days=1)
        starts: list[int] = []
        ends: list[int] = []
        bands: list[str] = []
        for (at, band), (nxt, _) in itertools.pairwise(changes):
            s, e = max(at, lo), min(nxt, hi)
            if s >= e:
                continue
            if bands and bands[-1] == band and ends[-1] == s:
                ends[-1] = e
            else:
                starts.append(s)
                ends.append(e)
                bands.append(band)
        if len(self._cache) > 4096:
            self._cache.clear()
        found = self._cache[k] = (starts, ends, bands)
        return found

    def interval(self, t_us: int) -> tuple[int, str]:
        """(end of the band interval containing epoch microsecond ``t_us``, its band)."""
        day = t_us // DAY_US
        found = self._cache.get(day)
        starts, ends, bands = found if found is not None else self._utc_day(day)
        i = bisect_right(starts, t_us) - 1
        return ends[i], bands[i]

    def band_at(self, t_us: int) -> str:
        """The band in force at epoch microsecond ``t_us``."""
        return self.interval(t_us)[1]

    def split(self, t_us: int, seconds: Decimal) -> list[tuple[Decimal, Decimal, str, int]]:
        """Cut usage of ``seconds`` starting at ``t_us`` at band changes.

        Returns ``(elapsed_from, elapsed_to, band, start_us)`` pieces covering
        ``[0, seconds]`` with adjacent same-band pieces merged.
        """
        end, band = self.interval(t_us)
        stop = t_us + seconds * MILLION
        if stop <= end:
            return [(Decimal(0), seconds, band, t_us)]
        out: list[tuple[Decimal, Decimal, str, int]] = []
        a, cur_start, cur = Decimal(0), t_us, band
        while True:
            nxt_end, nxt_band = self.interval(end)
            if nxt_band != cur:
                b = Decimal(end - t_us) / MILLION
                out.append((a, b, cur, cur_start))
                a, cur_start, cur = b, end, nxt_band
            if stop <= nxt_end:
                out.append((a, seconds, cur, cur_start))
                return out
            end = nxt_end
