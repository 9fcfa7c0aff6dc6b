"""Grants burnt down by usage, period by period: the balance of a metered entitlement (pure).

OpenMeter's credit engine, as its documentation and code state it (docs/entitlements.md cites them):

- **Order.** Usage burns the grants active at the time in this order: lower `priority` first; then a grant with an
  expiration before one without, the earlier expiration first; then the earlier created; then the id.
- **Phases.** Within a usage period, time is cut wherever a grant starts, expires, is voided or recurs. At the start
  of a phase a grant that just became active holds its `amount`, a recurring grant at its recurrence goes back to its
  `amount`, a grant no longer active holds nothing (what it had left is lost). The phase's usage, plus the overage
  carried so far, burns the active grants in order; what no grant covers is the overage, carried on (a grant that
  becomes active later in the period pays it first, also one that becomes active at the very time of the value).
- **Resets.** At each new usage period (the automatic reset) every grant still active keeps
  `min(maxRolloverAmount, max(minRolloverAmount, balance))`; the overage is forgotten, unless the entitlement
  preserves it, in which case it burns the rolled-over balances first. The period's usage starts again at 0.
- **Value** at a time (already rounded up to the minute by the caller): the balance is the sum of what the grants
  active then hold, `usage` the usage of the period so far, `overage` the usage no grant covered, and
  `totalAvailableGrantAmount` what the grants covered in the period plus the balance.

Exact: Decimal amounts, only additions, subtractions and comparisons (no rounding anywhere).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from meterstream.entitlements.periods import Interval, Timeline, period_at

ZERO = Decimal(0)
_INSTANT = timedelta(microseconds=1)


@dataclass(frozen=True)
class Grant:
    id: str
    amount: Decimal
    effective_at: datetime
    created_at: datetime
    priority: int = 0
    expires_at: datetime | None = None
    voided_at: datetime | None = None
    max_rollover: Decimal | None = None  # None: the amount
    min_rollover: Decimal = ZERO
    recurrence: tuple[Interval, datetime] | None = None  # (interval, anchor)

    @property
    def ends_at(self) -> datetime | None:
        """When it stops being active (exclusive): its expiration or its voiding, whichever comes first."""
        ends = [t for t in (self.expires_at, self.voided_at) if t is not None]
        return min(ends) if ends else None

    def active_at(self, t: datetime) -> bool:
        end = self.ends_at
        return self.effective_at <= t and (end is None or t < end)

    def order(self) -> tuple:
        expires = self.expires_at
        return (self.priority, expires is None, expires.timestamp() if expires else 0.0, self.created_at, self.id)

    def rolled_over(self, balance: Decimal) -> Decimal:
        ceiling = self.amount if self.max_rollover is None else self.max_rollover
        return min(ceiling, max(self.min_rollover, balance))

    def recurrences(self, start: datetime, end: datetime) -> list[datetime]:
        """Its recurrence times in `(start, end)` while active (the balance goes back to the amount there)."""
        if self.recurrence is None:
            return []
        interval, anchor = self.recurrence
        out = []
        t = period_at(anchor, interval, start)[1]  # the first recurrence after `start`
        while t < end and self.active_at(t):
            out.append(t)
            t = period_at(anchor, interval, t)[1]
        return out


@dataclass(frozen=True)
class Value:
    balance: Decimal
    usage: Decimal  # in the current usage period
    overage: Decimal
    total_available: Decimal  # covered by grants in the current period + the balance
    grant_balances: dict[str, Decimal]  # the grants active at the time
    period: tuple[datetime, datetime]  # the current usage period


Usage = Callable[[datetime, datetime], Decimal]  # the usage in [from, to)


@dataclass(frozen=True)
class Segment:
    """One phase of the burn-down (OpenMeter's burn-down history segment): its usage, the overage carried at its end,
    the active grants' balances at its start (after activations) and end, and what each grant covered in it."""

    start: datetime
    end: datetime
    usage: Decimal
    overage: Decimal
    balances_at_start: dict[str, Decimal]
    balances_at_end: dict[str, Decimal]
    grant_usages: dict[str, Decimal]


def value_at(
    grants: Sequence[Grant],
    periods: Sequence[tuple[datetime, datetime]],
    usage: Usage,
    at: datetime,
    preserve_overage: bool = False,
    resets: Mapping[datetime, bool] | None = None,
    cuts: Iterable[datetime] = (),
    trace: list[Segment] | None = None,
) -> Value:
    """The entitlement's value at `at`: `periods` are its usage periods in order, from the first that must be
    computed (the caller starts where no balance can carry over from before) to the one holding `at`; `resets` maps
    the manual resets among their starts to whether each carries the overage (else `preserve_overage` decides).
    `cuts` are more times to cut phases at (a phase cut in two burns the same: the order of the grants does not change
    within it); `trace` (when given) receives every phase of positive length as a `Segment`."""
    extra = sorted(cuts)
    ordered = sorted(grants, key=Grant.order)
    balances: dict[str, Decimal] = {}
    overage = ZERO
    period_usage = covered = ZERO
    for i, (start, end) in enumerate(periods):
        stop = min(end, at)
        if i:  # the automatic reset at the period's start (a grant that starts right then is not rolled: it activates)
            kept = [g for g in ordered if g.active_at(start) and g.effective_at < start]
            balances = {g.id: g.rolled_over(balances.get(g.id, ZERO)) for g in kept}
            if (resets or {}).get(start, preserve_overage) and overage:
                overage = _burn(ordered, balances, overage, start)[0]
            else:
                overage = ZERO
            period_usage = covered = ZERO
        edges = {start, stop, *(t for t in extra if start < t < stop)}
        recurs: dict[str, set[datetime]] = {}
        for g in ordered:
            recurs[g.id] = set(g.recurrences(start, stop + _INSTANT))  # one at `stop` too
            for t in (g.effective_at, g.expires_at, g.voided_at, *recurs[g.id]):
                if t is not None and start < t < stop:
                    edges.add(t)
        times = sorted(edges)
        phases = list(pairwise(times))
        if stop == at:  # at the time itself: a grant that becomes active (or recurs) then pays the carried overage
            phases.append((at, at))
        for p0, p1 in phases:
            for g in ordered:
                if not g.active_at(p0):
                    balances.pop(g.id, None)
                elif g.id not in balances or p0 in recurs[g.id]:  # it just became active, or it recurs
                    balances[g.id] = g.amount
            used = usage(p0, p1) if p1 > p0 else ZERO
            period_usage += used
            before = dict(balances) if trace is not None and p1 > p0 else None
            overage, burnt = _burn(ordered, balances, used + overage, p0)
            covered += burnt
            if before is not None:
                trace.append(_segment(ordered, p0, p1, used, overage, before, balances))  # type: ignore[union-attr]
    active = {g.id: balances.get(g.id, ZERO) for g in ordered if g.active_at(at)}
    balance = sum(active.values(), ZERO)
    return Value(balance, period_usage, overage, covered + balance, active, periods[-1])


def _segment(
    ordered: Sequence[Grant], p0: datetime, p1: datetime, used: Decimal, overage: Decimal,
    before: dict[str, Decimal], after: dict[str, Decimal],
) -> Segment:  # fmt: skip
    active = [g.id for g in ordered if g.active_at(p0)]
    return Segment(
        p0, p1, used, overage, {k: before.get(k, ZERO) for k in active}, {k: after.get(k, ZERO) for k in active},
        {k: before.get(k, ZERO) - after.get(k, ZERO) for k in active if before.get(k, ZERO) != after.get(k, ZERO)},
    )  # fmt: skip


def _burn(
    ordered: Sequence[Grant], balances: dict[str, Decimal], amount: Decimal, at: datetime
) -> tuple[Decimal, Decimal]:
    """Burn `amount` through the grants active at `at`, in order; (what is left uncovered, what was burnt)."""
    burnt = ZERO
    for g in ordered:
        if amount <= 0:
            break
        have = balances.get(g.id, ZERO)
        if have > 0 and g.active_at(at):
            take = min(have, amount)
            balances[g.id] = have - take
            amount -= take
            burnt += take
    return amount, burnt


def first_period_start(timeline: Timeline, grants: Sequence[Grant], at: datetime, preserve_overage: bool) -> datetime:
    """Where the computation of the value at `at` must begin (never before the timeline's start): the current period's
    start, or earlier as long as a grant active at the start began before it (its balance rolled over at the resets
    since, and depends on the grants and usage of those periods); the timeline's start when the overage is carried
    across resets."""
    measure_from = timeline.start
    if preserve_overage:
        return measure_from
    start = timeline.period_at(at)[0]
    while True:
        earliest = min((g.effective_at for g in grants if g.active_at(start) and g.effective_at < start), default=None)
        if earliest is None:
            return start
        if earliest <= measure_from:
            return measure_from
        start = timeline.period_at(earliest)[0]


__all__ = ["Grant", "Segment", "Usage", "Value", "first_period_start", "value_at"]
