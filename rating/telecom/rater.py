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

from bisect import bisect_right
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from math import lcm
from typing import Any, NamedTuple

from meterstream.rating.money import ROUNDING, rounding_runner
from meterstream.rating.telecom.bundles import split_by_bundles
from meterstream.rating.telecom.compiled import MEMO_LIMIT
from meterstream.rating.telecom.errors import NoRate
from meterstream.rating.telecom.increments import grid_ceil, grid_count
from meterstream.rating.telecom.model import TelecomPlan
from meterstream.rating.telecom.prefixes import MEMO_LIMIT as HEADS_LIMIT
from meterstream.rating.telecom.rounding import round_amount
from meterstream.rating.telecom.timebands import EPOCH, MILLION, ONE_US

ZERO = Decimal(0)
_SUBTRACT = ROUNDING.subtract  # the bundle check's one operation, in the engine's context


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


def group_parts(lo: Decimal, hi: Decimal, groups: tuple, first: Decimal, step: Decimal) -> list[tuple]:
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


def allocate_lines(lines: dict[str, Decimal], cost: Decimal, q: Decimal, method: str):
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
    start: datetime | None = None,
    dimensions: Mapping[str, str],
    bundle_used: Mapping[str, Decimal],
    brief: bool = False,
    time_text: str | None = None,
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

    Most records repeat one already rated in the same destination and band (see
    ``compiled.Leg``): those are answered from the memo with no decimal arithmetic
    beyond the bundle check (in ``ROUNDING``, explicitly), with their own start and
    quantity put back in. Everything else, and every record that would raise, goes
    through ``_rate_cdr``, the rules as written; tests/rating/telecom/
    test_telecom_differential.py checks the two against a frozen copy of the rater.

    ``brief=True`` (the columnar processor, which needs no segments): a record answered from the memo
    comes back as the plain tuple ``(cost, line_key, bundle_id, billed)`` (``bundle_id`` None when no
    bundle covered it) — the values its RatedCDR would hold as ``cost``, ``line_key`` and
    ``bundle_units_used == {bundle_id: billed}`` (``{}`` when None) — without building the RatedCDR and
    its segments; every other record still comes back as a RatedCDR (tell them apart by
    ``type(r) is tuple``).

    ``time_text`` (instead of ``start``, which may then be None): the start as the canonical UTC text
    ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (what ``schemas.event`` writes, ``Fast.time_text``); it stands for
    ``datetime.fromisoformat(time_text)``, parsed only when needed. The band of a record in an hour that
    no band change cuts is then looked up by the hour's text (``CompiledPlan.hours``) instead of from
    the instant (voice records still checked exactly against the band's end unless too short to reach
    it). tests/rating/telecom/test_telecom_brief.py checks both against the frozen rater.
    """
    cp = plan.__pydantic_private__["_compiled"] or plan.compiled
    cm = cp.meters.get(meter)
    if cm is None or type(quantity) is not Decimal:
        return _reference(plan, meter, quantity, start, time_text, dimensions, bundle_used)
    try:
        number = dimensions.get("destination")
        if number:
            # memo keys are the heads of valid numbers (+digits or digits, what prefixes.match accepts): a number
            # whose head is one is valid when all after its first character is ASCII digits
            dest = cm.numbers.get(number[: cm.head])
            if dest is not None and not (number.isascii() and number[1:].isdigit()):
                dest = None
        else:
            dest = cm.numbers.get("")  # no number: the default rate (remembered under "", never a head)
        if dest is None:
            dest = cm.prefixes.match(number)  # answers, or raises, for every number
            if not number:
                cm.numbers[""] = dest
            else:
                # +digits or digits only, long enough that the head decides
                rest = number.strip("0123456789")
                if (not rest or (rest == "+" and number[0] == "+")) and len(number) >= cm.head:
                    if len(cm.numbers) >= HEADS_LIMIT:  # as many as the prefix table's own memo of heads
                        cm.numbers.clear()
                    cm.numbers[number[: cm.head]] = dest
        hour = None
        if start is None and time_text[-1] == "Z":  # a text (as documented): its hour, if no band change cuts it
            hour = cp.hours.get(time_text[:13], _UNSEEN)
            if hour is _UNSEEN:
                hour = _hour_entry(cp, time_text)
        if hour is None:
            if start is None:
                start = _fromisoformat(time_text)
            since = start - EPOCH  # exact; its days are whole UTC days since the epoch, floored
            spans = cp.spans.get(since.days) or cp.schedule.day_spans(since.days)
            i = bisect_right(spans[0], since) - 1
            band = spans[2][i]
            end = spans[1][i]
        else:
            band, slack, end = hour
        leg = dest.legs[band]
        known = leg.keys.get(quantity)  # by value; entries hold the one whole-number text of it
        if known is not None and known[2] is not quantity and not str(quantity).isdigit():
            raise _NotMemoised  # an equal number written otherwise (60.0, 6E+1): a fraction or exponent
        if known is None:
            text = str(quantity)
            if not text.isdigit():  # fractions, exponents, signs, NaN: not memoised
                raise _NotMemoised
            qi = int(text)
            if not leg.simple:
                key = qi
            elif qi <= leg.fi:
                key = leg.fi if qi else 0
            else:  # billed units: `first`, then whole `step`s
                key = leg.fi - ((leg.fi - qi) // leg.si) * leg.si
            if qi < 1_000_000:  # durations and message counts repeat; byte counts rarely do
                known = (timedelta(seconds=qi) if cm.voice else None, key, quantity, None)
                keys = leg.keys
                if len(keys) >= MEMO_LIMIT:
                    keys.clear()
                keys[quantity] = known
            else:  # not remembered: no brief answer to remember either (False)
                known = (timedelta(seconds=qi) if cm.voice else None, key, quantity, False)
        q_td, key, _, answer = known
        if cm.voice and (hour is None or q_td > slack):  # may reach the band's end: check exactly
            if hour is not None:
                if start is None:
                    start = _fromisoformat(time_text)
                since = start - EPOCH
            if since + q_td > end:
                raise _NotMemoised  # crosses a band change
        if answer and brief:  # a leg no bundle can cover: this quantity's answer, as below
            return answer
        if leg.simple:
            bundle_id = None
            if key and leg.bundles:
                for bid, amount in leg.bundles:  # as the fast path of _rate_cdr: first bundle with units left
                    used = bundle_used.get(bid, ZERO)
                    if type(used) is Decimal and not used.is_nan() and used >= amount:
                        continue  # used up: amount - used <= 0 (a rounded difference keeps its sign)
                    left = _SUBTRACT(amount, used)
                    if left.is_nan():
                        raise _NotMemoised
                    if left >= key:
                        bundle_id = bid
                        break
                    if left > 0:
                        raise _NotMemoised  # runs out inside this record
            table = leg.charged if bundle_id is None else leg.covered[bundle_id]
            found = table.get(key)
            if found is None:  # first record with these billed units here: price it as _rate_cdr's fast path does
                found = rounding_runner()(_simple_entry, cp, meter, dest, leg, band, quantity, key, bundle_id)
                if len(table) >= MEMO_LIMIT:
                    table.clear()
                table[key] = found
            head, tail, billed, line = found
            if brief:
                answer = (head[2], line[0], bundle_id, billed)
                if leg.plain and known[3] is None:
                    leg.keys[quantity] = (q_td, key, known[2], answer)  # the entry is there: replaced
                return answer  # type: ignore[return-value]
            if start is None:
                start = _fromisoformat(time_text)
            return _new_rated(
                RatedCDR,
                head  # concatenation: measurably cheaper here than unpacking  # noqa: RUF005
                + (
                    quantity,
                    billed,
                    (_new_segment(Segment, (start, quantity) + tail),),  # noqa: RUF005
                    {bundle_id: billed} if bundle_id is not None else {},
                )
                + line,
            )
        else:  # several rate groups or fractional increments: memoised by quantity, bundles untouched only
            found = leg.charged.get(key)
            if leg.test_all:
                billed = found[0][8] if found is not None else None
                for bid, amount, here in leg.test_all:  # as _rate_general: every bundle's units left
                    left = _SUBTRACT(amount, bundle_used.get(bid, ZERO))
                    if left.is_nan() or (here and left > 0 and (billed is None or billed)):
                        raise _NotMemoised  # draws on a bundle
            if found is not None:
                head, pieces, line = found
                if brief:  # memoised only when no bundle was drawn on: covered nothing
                    answer = (head[2], line[0], None, head[8])
                    if leg.plain and known[3] is None:
                        leg.keys[quantity] = (q_td, key, known[2], answer)  # the entry is there: replaced
                    return answer  # type: ignore[return-value]
                if start is None:
                    start = _fromisoformat(time_text)
                segments = tuple(
                    [_new_segment(Segment, (start if off is None else start + off, *rest)) for off, rest in pieces]
                )
                return _new_rated(RatedCDR, (*head, segments, {}, *line))
            miss = (leg.charged, key, None)
            if start is None:
                start = _fromisoformat(time_text)
    except Exception:  # _NotMemoised, or bad input: the reference path raises the error the rules define
        return _reference(plan, meter, quantity, start, time_text, dimensions, bundle_used)
    return _remember(plan, miss, meter, quantity, start, dimensions, bundle_used)


_UNSEEN = object()
_fromisoformat = datetime.fromisoformat
ONE_HOUR = timedelta(hours=1)


def _reference(
    plan: TelecomPlan,
    meter: str,
    quantity: Decimal,
    start: datetime | None,
    time_text: str | None,
    dimensions: Mapping[str, str],
    bundle_used: Mapping[str, Decimal],
) -> RatedCDR:
    """``_rate_cdr`` in ROUNDING, the start parsed from ``time_text`` when only the text was given."""
    if start is None and time_text is not None:
        start = _fromisoformat(time_text)
    return rounding_runner()(_rate_cdr, plan, meter, quantity, start, dimensions, bundle_used)


def _hour_entry(cp: Any, time_text: str) -> tuple[str, timedelta, timedelta] | None:
    """``cp.hours[time_text[:13]]``: the UTC hour's band, how far the band interval of the rater's memo
    path (``cp.spans``: cut at UTC midnight too) reaches past the hour's end, and that interval's end
    (since the epoch); None when a band change falls inside the hour (each record then looks it up)."""
    since = _fromisoformat(time_text) - EPOCH
    hour = timedelta(days=since.days, hours=since.seconds // 3600)
    if (EPOCH + hour).strftime("%Y-%m-%dT%H") != time_text[:13]:
        return None  # not the canonical text: not a key (nothing remembered)
    spans = cp.spans.get(since.days) or cp.schedule.day_spans(since.days)
    i = bisect_right(spans[0], hour) - 1
    end = spans[1][i]
    after = hour + ONE_HOUR
    entry = (spans[2][i], end - after, end) if end >= after else None
    hours = cp.hours
    if len(hours) >= MEMO_LIMIT:
        hours.clear()
    hours[time_text[:13]] = entry
    return entry


class _NotMemoised(Exception):
    """This record is rated by the reference path without touching the memo."""


def _simple_entry(
    cp: Any, meter: str, dest: Any, leg: Any, band: str, quantity: Decimal, billed_i: int, bundle_id: str | None
) -> tuple:
    """The memo entry of a one-group, whole-increment leg for ``billed_i`` billed units.

    The same expressions as the fast path of ``_rate_cdr`` (run in ROUNDING by the caller): for a
    plain whole ``quantity`` they depend on the billed units alone.
    """
    rate = leg.rate
    fi = rate.first_i
    qi = int(quantity)
    if qi <= fi:
        billed, count = (rate.first, 1) if qi else (ZERO, 0)
    else:
        k = -((fi - qi) // rate.step_i)
        count = 1 + k
        billed = quantity if billed_i == qi else Decimal(billed_i)
    connect = rate.connect_fee if billed else ZERO
    if bundle_id is None and billed:
        per = rate.per
        precise = connect + (rate.price * billed if per == 1 else rate.price * billed / per)
    else:
        precise = connect
    max_cost = dest.max_cost
    capped = max_cost is not None and precise > max_cost
    if capped:
        precise = max_cost
    cost = precise.quantize(cp.quantum, cp.rounding)
    key = dest.line_keys[band]
    head = (meter, cp.currency, cost, precise, capped, dest.id, dest.group)
    tail = (billed, count, rate.id, dest.id, dest.group, band, bundle_id, connect, precise)
    return head, tail, billed, (key, ((key, cost),))


def _remember(
    plan: TelecomPlan,
    miss: tuple[dict, int, str | None],
    meter: str,
    quantity: Decimal,
    start: datetime,
    dimensions: Mapping[str, str],
    bundle_used: Mapping[str, Decimal],
) -> RatedCDR:
    """Rate with the reference path and keep what any record of the same memo key will share."""
    rated = rounding_runner()(_rate_cdr, plan, meter, quantity, start, dimensions, bundle_used)
    table, key, bid = miss
    if rated.bundle_units_used != ({bid: rated.billed} if bid is not None else {}):
        return rated  # not the situation the key describes (cannot happen; never memoise a doubt)
    if len(table) >= MEMO_LIMIT:
        table.clear()
    line = (rated.line_key, rated.lines)
    pieces = tuple((None if s.start is start else s.start - start, s[1:]) for s in rated.segments)
    table[key] = (rated[:9], pieces, line)
    return rated


def _rate_cdr(
    plan: TelecomPlan,
    meter: str,
    quantity: Decimal,
    start: datetime,
    dimensions: Mapping[str, str],
    bundle_used: Mapping[str, Decimal],
) -> RatedCDR:
    cp = plan.__pydantic_private__["_compiled"] or plan.compiled
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
        if quantity > MAX_VOICE_SECONDS:  # split walks every band change: bound the work one record can ask for
            raise NoRate(
                "duration too long",
                f"{format(quantity, 'f')} seconds: one voice record is at most {MAX_VOICE_SECONDS} seconds (31 days);"
                " switches send long sessions as interim records",
                field="quantity",
            )
        spans = schedule.split(t_us, quantity)
    else:
        spans = [(ZERO, quantity, band, t_us)]
    billed, _ = _billed_and_count(quantity, qi, first_rate)
    connect = first_rate.connect_fee if billed else ZERO
    return _rate_general(cp, meter, dest, quantity, start, voice, spans, bundle_used, billed, connect)


MAX_VOICE_SECONDS = 31 * 86_400  # the longest voice record rated (docs/telecom.md); longer ones: dead letters

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
        for glo, ghi, g in group_parts(lo, hi, rate.groups, first, step):
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
            allocate_lines(by_line, cost, cp.quantum, cp.method),
        ),
    )
