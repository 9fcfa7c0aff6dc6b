"""Walking a session's tariff from any usage position: the pieces ``rate_cdr`` prices, exactly.

A session is rated as one growing record: the increment grid (``first/step`` of the rate in force
at the session start) is laid on the elapsed usage from 0, whatever the cut into records, and each
increment is priced by the band and rate group in force when it starts, after the bundles. This
module yields the priced pieces of elapsed usage ``[u0, u1)`` (the same cut as ``rater._rate_general``
makes for one record, from any ``u0``), prices them and applies the caps.

Money is kept exact as ``fixed + num / den``: ``fixed`` holds the connect fee and the caps reached
(decimals), ``num`` the usage charges since, scaled by ``den`` (the least common multiple of the
destination's ``per``), so that any cut of a session sums to the same numbers as one record and
the one division happens when a value is read (in ``money.ROUNDING``, as ``rate_cdr`` does).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from math import lcm
from typing import Any, NamedTuple

from meterstream.rating.telecom.bundles import split_by_bundles
from meterstream.rating.telecom.errors import NoRate
from meterstream.rating.telecom.increments import grid_ceil, grid_count
from meterstream.rating.telecom.model import TelecomPlan
from meterstream.rating.telecom.rater import group_parts
from meterstream.rating.telecom.session_rules import SessionRules, Strategy
from meterstream.rating.telecom.timebands import MILLION, to_us

ZERO = Decimal(0)
INF = Decimal("Infinity")


@dataclass(frozen=True, slots=True)
class Tariff:
    """What one session to one destination is rated with (resolved once per call)."""

    meter: str
    currency: str
    dest: Any  # compiled.CompiledDestination
    schedule: Any  # timebands.Schedule
    voice: bool
    start: datetime
    t0_us: int
    start_band: str
    first: Decimal
    step: Decimal
    den: int
    quantum: Decimal
    rounding: str  # the decimal module's rounding constant
    method: str
    per_increment: bool
    caps: dict[str, tuple[Decimal, Strategy] | None]  # band -> cap

    def ceil(self, x: Decimal) -> Decimal:
        """The billed end for elapsed usage ``x`` (the first grid point at or after it)."""
        return x if x.is_infinite() else grid_ceil(x, self.first, self.step)

    def count(self, x: Decimal) -> int:
        """How many increments start before billed ``x``."""
        return grid_count(x, self.first, self.step)

    def point(self, k: int) -> Decimal:
        """The end of the ``k``-th increment (``point(0) == 0``)."""
        return ZERO if k <= 0 else self.first + (k - 1) * self.step

    def index_after(self, x: Decimal) -> int:
        """The smallest ``k >= 1`` whose ``point(k)`` is after ``x``."""
        return 1 if x < self.first else 2 + int((x - self.first) // self.step)

    def index_at_most(self, x: Decimal) -> int:
        """The largest ``k`` whose ``point(k)`` is at or before ``x``."""
        return 0 if x < self.first else 1 + int((x - self.first) // self.step)


def resolve(
    plan: TelecomPlan, *, meter: str, start: datetime, dimensions: Mapping[str, str], rules: SessionRules, den: int = 1
) -> Tariff:
    """The tariff of a session starting at ``start``; raises ``NoRate`` as ``rate_cdr`` does.

    ``den`` is a denominator already in use (a session's state), kept as a factor of the new one.
    """
    cp = plan.__pydantic_private__["_compiled"] or plan.compiled
    cm = cp.meters.get(meter)
    if cm is None:
        raise NoRate("meter not rated by plan", meter, field="meter")
    dest = cm.prefixes.match(dimensions.get("destination"))
    try:
        t0_us = to_us(start)
    except TypeError:
        raise ValueError("start must be timezone-aware") from None
    band = cp.schedule.band_at(t0_us)
    rate = dest.rates[band]
    base, caps = _per_destination(dest, rules)
    return Tariff(
        meter=meter,
        currency=cp.currency,
        dest=dest,
        schedule=cp.schedule,
        voice=cm.voice,
        start=start,
        t0_us=t0_us,
        start_band=band,
        first=rate.first,
        step=rate.step,
        den=base if den in (1, base) else lcm(den, base),
        quantum=cp.quantum,
        rounding=cp.rounding,
        method=cp.method,
        per_increment=rules.rounding == "per_increment",
        caps=caps,
    )


_PER_DESTINATION: dict[tuple[int, SessionRules], tuple[Any, int, dict]] = {}


def _per_destination(dest: Any, rules: SessionRules) -> tuple[int, dict[str, tuple[Decimal, Strategy] | None]]:
    """The destination's common denominator and its cap per band under ``rules`` (computed once).

    Keyed by the compiled destination's identity; the entry holds the destination itself, so the
    identity cannot be reused by another object while the entry exists.
    """
    key = (id(dest), rules)
    found = _PER_DESTINATION.get(key)
    if found is None or found[0] is not dest:
        if len(_PER_DESTINATION) >= 4096:
            _PER_DESTINATION.clear()
        den = lcm(*(g[2] for r in dest.rates.values() for g in r.groups))
        caps = {b: rules.cap(dest.id, b, dest.max_cost) for b in dest.rates}
        found = _PER_DESTINATION[key] = (dest, den, caps)
    return found[1], found[2]


class Cost(NamedTuple):
    """An exact running cost ``fixed + num / den`` (``num`` is scaled by ``den``)."""

    fixed: Decimal
    num: Decimal
    den: int

    def precise(self) -> Decimal:
        """The value, with the one division ``rate_cdr`` makes (run in ``money.ROUNDING``)."""
        return self.fixed + self.num / self.den if self.num else self.fixed

    def rescaled(self, den: int) -> Cost:
        """The same value over ``den`` (a multiple of ``self.den``)."""
        return self if den == self.den else Cost(self.fixed, self.num * (den // self.den), den)


ZERO_COST = Cost(ZERO, ZERO, 1)


class Piece(NamedTuple):
    """A priced part of elapsed usage: usage ``[pa, pb)``, billed ``[plo, phi)``."""

    pa: Decimal
    pb: Decimal
    plo: Decimal
    phi: Decimal
    band: str
    rate: Any  # compiled.CompiledRate
    group: tuple[Decimal, Decimal, int]  # (from, price, per)
    bundle_id: str | None


def band_spans(t: Tariff, u0: Decimal, u1: Decimal) -> Iterator[tuple[Decimal, Decimal, str]]:
    """Cut elapsed ``[u0, u1)`` where the band changes (voice); SMS and data keep the start band."""
    if not t.voice:
        yield u0, u1, t.start_band
        return
    a = u0
    cur_a, cur_band = u0, None
    while True:
        x = (t.t0_us + a * MILLION).to_integral_value(ROUND_FLOOR)
        end_us, band = t.schedule.interval(int(x))
        b = min(Decimal(end_us - t.t0_us) / MILLION, u1)
        if cur_band is not None and band != cur_band:
            yield cur_a, a, cur_band
            cur_a = a
        cur_band = band
        if b >= u1:
            yield cur_a, u1, cur_band
            return
        a = b


def pieces(t: Tariff, u0: Decimal, u1: Decimal, remaining: dict[str, Decimal], used: dict[str, Decimal]):
    """The pieces of elapsed ``[u0, u1)`` in call order (bundle use taken from ``remaining`` into ``used``)."""
    bundles = t.dest.bundles
    rates = t.dest.rates
    for a, b, band in band_spans(t, u0, u1):
        rate = rates[band]
        lo, hi = t.ceil(a), t.ceil(b)
        parts = []
        for glo, ghi, g in group_parts(lo, hi, rate.groups, t.first, t.step):
            if bundles and glo < ghi:
                for plo, phi, bid in split_by_bundles(glo, ghi, band, bundles, remaining, used):
                    parts.append((plo, phi, bid, g))
            else:
                parts.append((glo, ghi, None, g))
        last = len(parts) - 1
        for i, (plo, phi, bid, g) in enumerate(parts):
            pa = a if i == 0 else min(max(plo, a), b)
            pb = b if i == last else min(max(phi, a), b)
            yield Piece(pa, pb, plo, phi, band, rate, g, bid)


def amount(t: Tariff, piece: Piece, end: Decimal) -> Decimal:
    """The exact charge of billed ``[piece.plo, end)`` of a piece, scaled by ``t.den``."""
    if piece.bundle_id is not None or end <= piece.plo:
        return ZERO
    _, price, per = piece.group
    if not price:
        return ZERO
    if not t.per_increment:
        return price * (end - piece.plo) * (t.den // per)
    return _cells(t, piece.plo, end, price, per) * t.den


def _cells(t: Tariff, lo: Decimal, hi: Decimal, price: Decimal, per: int) -> Decimal:
    """Billed ``[lo, hi)`` with each increment (or part of one) rounded on its own."""

    def one(length: Decimal) -> Decimal:
        return (price * length / per).quantize(t.quantum, t.rounding)

    total = ZERO
    x = lo
    if x < t.first:
        e = min(hi, t.first)
        total += one(e - x)
        x = e
    if x >= hi:
        return total
    c0 = t.ceil(x)
    if x < c0:
        e = min(hi, c0)
        total += one(e - x)
        x = e
    if x >= hi:
        return total
    n = (hi - x) // t.step
    if n:
        total += n * one(t.step)
        x += n * t.step
    if x < hi:
        total += one(hi - x)
    return total


def charge(cost: Cost, scaled: Decimal, cap: tuple[Decimal, Strategy] | None) -> tuple[Cost, Decimal, bool]:
    """Add ``scaled`` (an amount times ``cost.den``) under ``cap``: (new cost, charged, cut by the cap)."""
    if cap is not None:
        room = cap[0] * cost.den - (cost.fixed * cost.den + cost.num)
        if scaled > max(room, ZERO):
            if room > 0:
                return Cost(cap[0], ZERO, cost.den), room, True
            return cost, ZERO, True
    if not scaled:
        return cost, ZERO, False
    return Cost(cost.fixed, cost.num + scaled, cost.den), scaled, False


def first_index(pred, lo: int, hi: int | None) -> int:
    """The smallest ``k`` in ``[lo, hi]`` with ``pred(k)`` (``pred`` false then true; ``hi`` None: unbounded).

    Returns ``hi + 1`` when ``pred`` holds nowhere in a bounded range.
    """
    if hi is None:  # gallop to a bound first
        span = 1
        while not pred(lo + span):
            span *= 2
        lo, hi = lo + span // 2, lo + span
    elif not pred(hi):
        return hi + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def connect_reached(t: Tariff, cost: Cost, cap: tuple[Decimal, Strategy]) -> Decimal:
    """Where a cap the connect fee was cut by is reached: at 0 if the cost had reached it already
    (no increment starts), else with the fee, i.e. within the first increment (its end)."""
    return ZERO if cap[0] * cost.den <= cost.fixed * cost.den + cost.num else t.point(1)


def reached(t: Tariff, cost: Cost, piece: Piece) -> Decimal:
    """The first increment end in ``piece`` where ``cost`` plus its charge reaches the band's cap.

    Called when the cap cut the piece's charge (or the connect fee), so such an end exists.
    """
    cap = t.caps[piece.band]
    room = cap[0] * cost.den - (cost.fixed * cost.den + cost.num)
    if room <= 0:
        return t.ceil(piece.plo)
    hi = None if piece.phi.is_infinite() else t.index_at_most(piece.phi)
    k = first_index(lambda k: amount(t, piece, t.point(k)) >= room, t.index_after(piece.plo), hi)
    return t.point(k)
