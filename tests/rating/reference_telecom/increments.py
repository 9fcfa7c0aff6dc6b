"""Billing increments ``first/step`` laid on the elapsed usage of one record.

The increments tile the usage from 0: one block of ``first`` units, then blocks of
``step`` units.  Every increment the usage touches is billed in full, so a 25 s
call under 60/1 bills 60 s and a 61 s call bills 61 s; under 60/60 it bills 120 s.
An increment is priced by the rate (time band and rate group) in force when it
*starts*; both helpers below work on that grid of increment starts.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

ZERO = Decimal(0)
ONE = Decimal(1)


def grid_ceil(x: Decimal, first: Decimal, step: Decimal) -> Decimal:
    """The first increment boundary at or after elapsed ``x`` (the billed end for usage ``x``)."""
    if x <= 0:
        return ZERO
    if x <= first:
        return first
    if step == ONE:  # the common 60/1 and 1/1: just the next whole unit
        return x.to_integral_value(ROUND_CEILING)
    q, r = divmod(x - first, step)
    return first + (q + 1 if r else q) * step


def grid_count(x: Decimal, first: Decimal, step: Decimal) -> int:
    """How many increments start before elapsed ``x``."""
    if x <= 0:
        return 0
    if x <= first:
        return 1
    if step == ONE and first == first.to_integral_value():
        return 1 + int((x - first).to_integral_value(ROUND_CEILING))
    q, r = divmod(x - first, step)
    return 1 + int(q) + (1 if r else 0)
