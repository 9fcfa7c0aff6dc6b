"""``rate_cdr``: price one call/SMS/data record against a telecom plan.

Order of work for one record (the rules are in docs/telecom.md):

1. destination -> longest priced prefix (or the ``*any`` default rate);
2. voice usage is cut at time-band changes; SMS and data are rated entirely in
   the band in force at their start;
3. the increment grid (``first/step``) of the rate in force at the start is laid
   on the elapsed usage; each increment is priced by the band and rate group in
   force when it starts;
4. bundles cover billed usage before money is charged (split shown as segments);
5. connect fee (once, first segment) + usage, exact; capped at ``max_cost``;
6. one rounding to the plan's rating precision with its method.

Quantities are in the meter's base unit: seconds, messages or bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from math import lcm
from typing import Any, NamedTuple

from meterstream.rating.telecom.bundles import split_by_bundles  # unchanged since the freeze: shared
from meterstream.rating.telecom.increments import grid_ceil, grid_count  # unchanged since the freeze: shared
from meterstream.rating.telecom.model import TelecomPlan
from meterstream.rating.telecom.rounding import round_amount  # unchanged since the freeze: shared

from ._money import rounding_runner
from .errors import NoRate
from .timebands import EPOCH, MILLION, ONE_US

ZERO = Decimal(0)

_PLANS: dict[int, tuple[TelecomPlan, Any]] = {}  # id(plan) -> (plan kept alive, its frozen compiled form)


def _compiled(plan: TelecomPlan) -> Any:
    """The reference compilation of ``plan`` (this copy's own compile_plan, cached per plan object)."""
    found = _PLANS.get(id(plan))
    if found is None or found[0] is not plan:
        from .compiled import compile_plan

        found = _PLANS[id(plan)] = (plan, compile_plan(plan))
    return found[1]


class Segment(NamedTuple):
    """One priced piece of a record (immutable; a NamedTuple because it is built per CDR).

    ``usage`` is the real quantity in the piece, ``billed`` what the increments
    bill for it (both in base units), ``increments`` how many increments start in
    it.  ``amount`` is exact (unrounded) and includes ``connect_fee``; it is 0
    for a piece covered by bundle ``bundle_id``.
    """

    start: datetime
    usage: Decimal
    billed: Decimal
    increments: int
    rate_id: str
    destination_id: str
    destination_group: str
    band: str
    bundle_id: str | None
    connect_fee: Decimal
    amount: Decimal


class RatedCDR(NamedTuple):
    """The priced record (immutable; a NamedTuple: cheap to build at 100k+/s).

    ``cost`` is ``precise_cost`` rounded once to the plan's rating precision.
    ``lines`` splits ``cost`` per ``meter/group/band`` (rounded per line, the
    largest line absorbing the rounding difference, so they sum to ``cost``);
    ``line_key`` is the first segment's line.
    """

    meter: str
    currency: str
    cost: Decimal
    precise_cost: Decimal
    capped: bool
    destination_id: str
    destination_group: str
    usage: Decimal
    billed: Decimal
    segments: tuple[Segment, ...]
    bundle_units_used: dict[str, Decimal]
    line_key: str
    lines: tuple[tuple[str, Decimal], ...]

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict; decimals as strings, times as ISO 8601."""
        return {
            "meter": self.meter,
            "currency": self.currency,
            "cost": str(self.cost),
            "precise_cost": str(self.precise_cost),
            "capped": self.capped,
            "destination_id": self.destination_id,
            "destination_group": self.destination_group,
            "usage": str(self.usage),
            "billed": str(self.billed),
            "line_key": self.line_key,
            "lines": [{"line_key": k, "amount": str(a)} for k, a in self.lines],
            "bundle_units_used": {k: str(v) for k, v in self.bundle_units_used.items()},
            "segments": [
                {
                    "start": s.start.isoformat(),
                    "usage": str(s.usage),
                    "billed": str(s.billed),
                    "increments": s.increments,
                    "rate_id": s.rate_id,
                    "destination_id": s.destination_id,
                    "destination_group": s.destination_group,
                    "time_band": s.band,
                    "bundle_id": s.bundle_id,
                    "connect_fee": str(s.connect_fee),
                    "amount": str(s.amount),
                }
                for s in self.segments
            ],
        }


def _group_parts(lo: Decimal, hi: Decimal, groups: tuple, first: Decimal, step: Decimal) -> list[tuple]:
    """Cut billed ``[lo, hi)`` where the rate group changes (at increment starts)."""
    if len(groups) == 1:
        return [(lo, hi, groups[0])]
    bounds = [grid_ceil(g[0], first, step) for g in groups] + [None]
    if lo == hi:
        g = next(g for g, s, e in zip(groups, bounds, bounds[1:], strict=False) if e is None or lo < e)
        return [(lo, hi, g)]
    out = []
    for g, g_lo, g_hi in zip(groups, bounds, bounds[1:], strict=False):
        s = max(lo, g_lo)
        e = hi if g_hi is None else min(hi, g_hi)
        if s < e:
            out.append((s, e, g))
    return out


def _allocate(lines: dict[str, Decimal], cost: Decimal, q: Decimal, method: str):
    """Round per line; the largest line takes the difference so lines sum to ``cost``."""
    if len(lines) == 1:
        return ((next(iter(lines)), cost),)
    keys = list(lines)
    rounded = [round_amount(lines[k], q, method) for k in keys]
    diff = cost - sum(rounded)
    if diff:
        i = max(range(len(keys)), key=rounded.__getitem__)
        rounded[i] += diff
    return tuple(zip(keys, rounded, strict=True))


def _billed_and_count(quantity: Decimal, qi: int | None, rate: Any) -> tuple[Decimal, int]:
    """Billed quantity and number of increments; integer arithmetic when it is exact."""
    fi, si = rate.first_i, rate.step_i
    if qi is not None and fi is not None:
        if qi <= 0:
            return ZERO, 0
        if qi <= fi:
            return rate.first, 1
        k = -((fi - qi) // si)
        billed = fi + k * si
        return (quantity if billed == qi else Decimal(billed)), 1 + k
    first, step = rate.first, rate.step
    return grid_ceil(quantity, first, step), grid_count(quantity, first, step)


def rate_cdr(
    plan: TelecomPlan,
    *,
    meter: str,
    quantity: Decimal,
    start: datetime,
    dimensions: Mapping[str, str],
    bundle_used: Mapping[str, Decimal],
) -> RatedCDR:
    """Rate one record.

    ``quantity`` is seconds (voice), messages (sms) or bytes (data); ``start``
    is tz-aware.  ``bundle_used`` is what the customer already used of each
    bundle this period (base units); the result's ``bundle_units_used`` is what
    this record adds.  Raises :class:`NoRate` when the plan cannot price it.

    Runs in ``money.ROUNDING`` (60 digits), whatever the caller's decimal context:
    prices per 60 seconds divide, so the exact context cannot be used, and the
    default 28-digit one would round large products before the one rounding step
    (or refuse to quantize them).
    """
    return rounding_runner()(_rate_cdr, plan, meter, quantity, start, dimensions, bundle_used)


def _rate_cdr(
    plan: TelecomPlan,
    meter: str,
    quantity: Decimal,
    start: datetime,
    dimensions: Mapping[str, str],
    bundle_used: Mapping[str, Decimal],
) -> RatedCDR:
    cp = _compiled(plan)
    cm = cp.meters.get(meter)
    if cm is None:
        raise NoRate("meter not rated by plan", meter)
    dest = cm.prefixes.match(dimensions.get("destination"))
    if not isinstance(quantity, Decimal) or not quantity.is_finite() or quantity < 0:
        raise ValueError(f"quantity must be a finite Decimal >= 0, got {quantity!r}")
    try:
        t_us = (start - EPOCH) // ONE_US
    except TypeError:
        raise ValueError("start must be timezone-aware") from None
    qi: int | None = int(quantity)
    if qi != quantity:
        qi = None
    schedule = cp.schedule
    end_us, band = schedule.interval(t_us)
    voice = cm.kind == "voice"
    single = not voice or t_us + (qi * 1_000_000 if qi is not None else quantity * MILLION) <= end_us
    first_rate = dest.rates[band]

    # Fast path (most records): one band, one rate group, and any bundle either
    # empty or covering the whole record.  Same rules as the general path.
    if single and first_rate.price is not None:
        fi = first_rate.first_i
        if qi is not None and fi is not None:  # integer increments (inlined _billed_and_count)
            if qi <= fi:
                billed, count = (first_rate.first, 1) if qi else (ZERO, 0)
            else:
                k = -((fi - qi) // first_rate.step_i)
                count = 1 + k
                billed = fi + k * first_rate.step_i
                billed = quantity if billed == qi else Decimal(billed)
        else:
            billed, count = _billed_and_count(quantity, qi, first_rate)
        connect = first_rate.connect_fee if billed else ZERO
        bundle_id = b = None
        for b in dest.bundles if billed else ():
            if b.bands is None or band in b.bands:
                left = b.amount - bundle_used.get(b.id, ZERO)
                if left >= billed:
                    bundle_id = b.id
                    break
                if left > 0:
                    break  # runs out inside this record: general path
        else:
            b = None
        if bundle_id is not None or b is None:
            if bundle_id is None and billed:
                per = first_rate.per
                precise = connect + (first_rate.price * billed if per == 1 else first_rate.price * billed / per)
            else:
                precise = connect
            max_cost = dest.max_cost
            capped = max_cost is not None and precise > max_cost
            if capped:
                precise = max_cost
            cost = precise.quantize(cp.quantum, cp.rounding)
            key = dest.line_keys[band]
            did, group = dest.id, dest.group
            rid = first_rate.id
            segment = _new_segment(
                Segment, (start, quantity, billed, count, rid, did, group, band, bundle_id, connect, precise)
            )
            return _new_rated(
                RatedCDR,
                (
                    meter,
                    cp.currency,
                    cost,
                    precise,
                    capped,
                    did,
                    group,
                    quantity,
                    billed,
                    (segment,),
                    {bundle_id: billed} if bundle_id is not None else {},
                    key,
                    ((key, cost),),
                ),
            )
    if voice and not single:
        spans = schedule.split(t_us, quantity)
    else:
        spans = [(ZERO, quantity, band, t_us)]
    billed, _ = _billed_and_count(quantity, qi, first_rate)
    connect = first_rate.connect_fee if billed else ZERO
    return _rate_general(cp, meter, dest, quantity, start, voice, spans, bundle_used, billed, connect)


_new_segment = _new_rated = tuple.__new__  # skip the NamedTuple keyword wrapper on the hot path


def _rate_general(
    cp: Any,
    meter: str,
    dest: Any,
    quantity: Decimal,
    start: datetime,
    voice: bool,
    spans: list[tuple[Decimal, Decimal, str, int]],
    bundle_used: Mapping[str, Decimal],
    billed_total: Decimal,
    connect: Decimal,
) -> RatedCDR:
    """Records split by band, rate group or a bundle running out."""
    rates = dest.rates
    first_rate = rates[spans[0][2]]
    first, step = first_rate.first, first_rate.step
    bundles = dest.bundles
    used: dict[str, Decimal] = {}
    if bundles:
        remaining = {b.id: b.amount - bundle_used.get(b.id, ZERO) for b in bundles}
    did, dgroup = dest.id, dest.group
    nums: dict[int, Decimal] = {}
    raw: list[list[Any]] = []  # [start, usage, billed, incs, rate_id, band, bundle, fee, amount]
    count_before = 0  # increments starting before the current piece (pieces are contiguous)
    for a, b, band, _ in spans:
        rate = rates[band]
        lo = grid_ceil(a, first, step)
        hi = grid_ceil(b, first, step)
        parts = []
        for glo, ghi, g in _group_parts(lo, hi, rate.groups, first, step):
            if bundles and glo < ghi:
                for plo, phi, bid in split_by_bundles(glo, ghi, band, bundles, remaining, used):
                    parts.append((plo, phi, bid, g))
            else:
                parts.append((glo, ghi, None, g))
        last = len(parts) - 1
        for i, (plo, phi, bid, g) in enumerate(parts):
            pa = a if i == 0 else min(max(plo, a), b)
            pb = b if i == last else min(max(phi, a), b)
            billed = phi - plo
            if bid is None and billed:
                num = g[1] * billed
                per = g[2]
                nums[per] = nums.get(per, ZERO) + num
                amount = num / per
            else:
                amount = ZERO
            seg_start = start + timedelta(microseconds=int(pa * MILLION)) if voice and pa else start
            count = grid_count(phi, first, step)
            raw.append([seg_start, pb - pa, billed, count - count_before, rate.id, band, bid, ZERO, amount])
            count_before = count

    raw[0][7] = connect
    raw[0][8] += connect
    if not nums:
        usage_total = ZERO
    elif len(nums) == 1:
        ((per, num),) = nums.items()
        usage_total = num / per
    else:
        common = lcm(*nums)
        usage_total = sum(num * (common // per) for per, num in nums.items()) / common
    precise = connect + usage_total

    capped = dest.max_cost is not None and precise > dest.max_cost
    if capped:
        precise = budget = dest.max_cost
        for r in raw:
            r[8] = min(r[8], budget)
            budget -= r[8]

    cost = precise.quantize(cp.quantum, cp.rounding)
    prefix = dest.line_prefix
    by_line: dict[str, Decimal] = {}
    segments = []
    for s, usage, billed, incs, rid, band, bid, fee, amount in raw:
        key = prefix + band
        by_line[key] = by_line.get(key, ZERO) + amount
        segments.append(_new_segment(Segment, (s, usage, billed, incs, rid, did, dgroup, band, bid, fee, amount)))
    return _new_rated(
        RatedCDR,
        (
            meter,
            cp.currency,
            cost,
            precise,
            capped,
            did,
            dgroup,
            quantity,
            billed_total,
            tuple(segments),
            used,
            prefix + raw[0][5],
            _allocate(by_line, cost, cp.quantum, cp.method),
        ),
    )
