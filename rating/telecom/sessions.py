"""Interim and final records of one call or data session, rated as one growing record.

``rate_session_record(plan, state, record, bundle_used=...) -> (SessionState, RatedSlice)`` is pure:
no I/O, no clock. The caller keeps the returned :class:`SessionState` per session id (it is small
and immutable) and passes it with the next record of that session. Rules (docs/telecom.md, *Sessions*):

* the connect fee is charged once per session, with the first slice that bills anything;
* the increment grid runs from the session start across records: a 60/60 call sent as 30 s + 45 s
  bills 2 increments (one with each record), not 1 + 1 with each record rounded up;
* each increment is priced by the band and rate group in force when it starts, bundles first, so
  any cut of a session costs what one record of its total usage costs (``rate_cdr``);
* money: see ``session_rules`` (rounding per record with the remainder carried, or per increment;
  caps per time band with ``stop_charging`` or ``disconnect``);
* sequences: a repeated sequence is a ``duplicate`` (no charge). A gap before a record carrying
  the session's ``total_usage`` is reported in ``missing`` and the record is rated (its total covers
  the missing slices); a gap before a record carrying only its slice's ``usage`` is ``held``: kept
  in the state, uncharged, until the missing records arrive (then rated in order) or the caller
  gives up waiting and calls :func:`release_held`. A missing record that arrives after a total
  covered it is ``late`` (no charge).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, NamedTuple

from meterstream.rating.money import rounding_runner
from meterstream.rating.telecom.rater import MAX_VOICE_SECONDS, Segment, allocate_lines
from meterstream.rating.telecom.session_rules import SessionRules, rules_for
from meterstream.rating.telecom.timebands import MILLION
from meterstream.rating.telecom.walk import (
    ZERO,
    ZERO_COST,
    Cost,
    Tariff,
    amount,
    charge,
    connect_reached,
    pieces,
    reached,
    resolve,
)

MAX_HELD = 64  # records held behind one gap at most; one more is refused (the caller dead-letters it)
Outcome = Literal["rated", "duplicate", "late", "held", "released"]


class SessionError(ValueError):
    """A session record that cannot be rated: ``field`` names the record field, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One interim or final record of a session, as a switch sends it.

    ``start`` is the session's start (answer time), the same on every record. Exactly one of
    ``usage`` (this slice only: Diameter Used-Service-Unit) and ``total_usage`` (since the start:
    RADIUS Acct-Session-Time, a CDR's running duration) is given, in the meter's base unit.
    """

    session_id: str
    sequence: int
    meter: str
    start: datetime
    dimensions: Mapping[str, str] = field(default_factory=dict)
    usage: Decimal | None = None
    total_usage: Decimal | None = None
    final: bool = False


@dataclass(frozen=True, slots=True)
class SessionState:
    """What one session was billed so far (store it per session id; pass it with the next record)."""

    session_id: str
    meter: str
    start: datetime
    destination: str | None
    destination_id: str
    destination_group: str
    first_sequence: int
    last_sequence: int  # the last record rated (first_sequence - 1 before any)
    usage: Decimal = ZERO  # elapsed usage rated
    billed: Decimal = ZERO  # billed units (the increment grid's end)
    increments: int = 0
    connect_fee: Decimal = ZERO  # charged (once)
    cost_exact: Cost = ZERO_COST
    precise_cost: Decimal = ZERO
    cost: Decimal = ZERO  # charged so far: the sum of the slices' costs
    bundle_units_used: tuple[tuple[str, Decimal], ...] = ()
    capped: bool = False
    disconnect_at: Decimal | None = None  # elapsed usage where a `disconnect` cap was reached
    final: bool = False
    missing: tuple[int, ...] = ()  # sequences a total_usage record covered without seeing them
    held: tuple[SessionRecord, ...] = ()  # per-slice records waiting behind a gap, by sequence


class RatedSlice(NamedTuple):
    """The outcome of one call: what it charged (0 unless ``outcome`` is rated or released)."""

    session_id: str
    outcome: Outcome
    sequences: tuple[int, ...]  # the records this result accounts for
    reason: str
    missing: tuple[int, ...]  # sequences not seen (rated over by a total, or assumed empty on release)
    meter: str
    currency: str
    destination_id: str
    destination_group: str
    usage: Decimal  # elapsed usage of this slice
    billed: Decimal  # units newly billed
    increments: int  # increments newly started
    cost: Decimal  # charged now (rounded; the slices sum to the session's rounded cost)
    precise_cost: Decimal  # the exact charge of this slice
    connect_fee: Decimal
    capped: bool  # a cap cut this slice's charge
    disconnect: bool  # a `disconnect` cap was reached (now or before): cut the session
    disconnect_at: Decimal | None
    final: bool
    segments: tuple[Segment, ...]
    bundle_units_used: dict[str, Decimal]
    lines: tuple[tuple[str, Decimal], ...]


def rate_session_record(
    plan,
    state: SessionState | None,
    record: SessionRecord,
    *,
    bundle_used: Mapping[str, Decimal],
    rules: SessionRules | None = None,
    first_sequence: int = 1,
) -> tuple[SessionState, RatedSlice]:
    """Rate one record of a session; ``state`` is None for the session's first record seen.

    ``bundle_used`` is what the customer used of each bundle this period before this record (the
    caller adds each slice's ``bundle_units_used``, as for ``rate_cdr``). ``first_sequence`` is the
    first record's number (3GPP partial records start at 1, Diameter CC-Request-Number at 0).
    ``rules`` None: the plan's own ``sessions:`` rules (``TelecomPlan.sessions``).
    Raises ``NoRate`` (destination or meter not priced) and :class:`SessionError` (bad record);
    neither changes the caller's state. Runs in ``money.ROUNDING`` like ``rate_cdr``.
    """
    return rounding_runner()(_rate, plan, state, record, bundle_used, rules_for(plan, rules), first_sequence)


def release_held(
    plan, state: SessionState, *, bundle_used: Mapping[str, Decimal], rules: SessionRules | None = None
) -> tuple[SessionState, RatedSlice]:
    """Rate the held records now, as if the missing ones carried no usage (reported in ``missing``).

    For the caller that stops waiting (the final record is held and a timeout passed): the usage
    of the missing records is unknown, so this is what is known, charged, and said.
    """
    return rounding_runner()(_release, plan, state, bundle_used, rules_for(plan, rules))


def _check(state: SessionState | None, record: SessionRecord, first_sequence: int) -> None:
    seq = record.sequence
    if type(seq) is not int or seq < first_sequence:
        raise SessionError("sequence", f"must be a whole number >= {first_sequence}, got {seq!r}")
    if not record.session_id or not isinstance(record.session_id, str):
        raise SessionError("session_id", "must be a non-empty string")
    given = [name for name in ("usage", "total_usage") if getattr(record, name) is not None]
    if len(given) != 1:
        raise SessionError("usage", "give exactly one of usage (this slice) and total_usage (since the start)")
    value = getattr(record, given[0])
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise SessionError(given[0], f"must be a finite Decimal >= 0, got {value!r}")
    if not isinstance(record.start, datetime) or record.start.utcoffset() is None:
        raise SessionError("start", f"must be a timezone-aware datetime, got {record.start!r}")
    if state is None:
        return
    for name, mine, theirs in (
        ("session_id", state.session_id, record.session_id),
        ("meter", state.meter, record.meter),
        ("start", state.start, record.start),
        ("dimensions.destination", state.destination, record.dimensions.get("destination")),
    ):
        if mine != theirs:
            raise SessionError(name, f"{theirs!r} differs from the session's {mine!r}")


def _empty(t: Tariff, record: SessionRecord, first_sequence: int) -> SessionState:
    return SessionState(
        session_id=record.session_id,
        meter=record.meter,
        start=record.start,
        destination=record.dimensions.get("destination"),
        destination_id=t.dest.id,
        destination_group=t.dest.group,
        first_sequence=first_sequence,
        last_sequence=first_sequence - 1,
    )


def _rate(plan, state, record, bundle_used, rules, first_sequence):
    _check(state, record, first_sequence)
    t = None
    if state is None:
        t = resolve(plan, meter=record.meter, start=record.start, dimensions=record.dimensions, rules=rules)
        state = _empty(t, record, first_sequence)
    seq = record.sequence
    if seq <= state.last_sequence:
        if seq in state.missing:
            rest = tuple(s for s in state.missing if s != seq)
            return replace(state, missing=rest), _nothing(plan, state, "late", (seq,), "covered by a later total")
        return state, _nothing(plan, state, "duplicate", (seq,), f"sequence {seq} already rated")
    if any(h.sequence == seq for h in state.held):
        return state, _nothing(plan, state, "duplicate", (seq,), f"sequence {seq} already held")
    if state.final:
        raise SessionError("sequence", f"{seq} comes after the final record {state.last_sequence}")
    for h in state.held:
        if h.final and seq > h.sequence:
            raise SessionError("sequence", f"{seq} comes after the final record {h.sequence} (held)")
    if seq > state.last_sequence + 1 and record.total_usage is None:
        if len(state.held) >= MAX_HELD:
            raise SessionError("sequence", f"{seq}: {MAX_HELD} records already held behind a gap")
        held = tuple(sorted((*state.held, record), key=lambda r: r.sequence))
        waiting = _gaps(state.last_sequence, held)
        reason = f"held: waiting for sequence {', '.join(map(str, waiting))}"
        return replace(state, held=held), _nothing(plan, state, "held", (seq,), reason, waiting)
    return _apply(plan, state, [record], bundle_used, rules, "rated", t)


def _release(plan, state, bundle_used, rules):
    if not state.held:
        return state, _nothing(plan, state, "released", (), "nothing held")
    return _apply(plan, state, [], bundle_used, rules, "released")


def _gaps(last: int, held: tuple[SessionRecord, ...]) -> tuple[int, ...]:
    seen = {r.sequence for r in held}
    return tuple(s for s in range(last + 1, held[-1].sequence) if s not in seen)


def _apply(plan, state, records, bundle_used, rules, outcome, t=None):
    """Rate ``records`` (and the held ones they make contiguous, or all held ones on release)."""
    if t is None:
        dims = {"destination": state.destination} if state.destination is not None else {}
        den = state.cost_exact.den
        t = resolve(plan, meter=state.meter, start=state.start, dimensions=dims, rules=rules, den=den)
    last, usage, final = state.last_sequence, state.usage, state.final
    missing = list(state.missing)
    sequences: list[int] = []
    new_missing: list[int] = []
    queue = sorted([*state.held, *records], key=lambda r: r.sequence)
    held: list[SessionRecord] = []
    for r in queue:
        if r.sequence <= last:  # a held slice a total has just covered
            sequences.append(r.sequence)
            continue
        contiguous = r.sequence == last + 1
        if not (contiguous or r.total_usage is not None or outcome == "released"):
            held.append(r)
            continue
        if held:  # a total jumped over held slices: they are covered by it
            if r.total_usage is None:
                held.append(r)
                continue
            sequences.extend(h.sequence for h in held)
            held = []
        if final:
            raise SessionError("sequence", f"{r.sequence} comes after the final record {last}")
        new_missing.extend(range(last + 1, r.sequence))
        if r.total_usage is not None:
            if r.total_usage < usage:
                raise SessionError("total_usage", f"{r.total_usage} is less than the usage already rated ({usage})")
            slice_usage, usage = r.total_usage - usage, r.total_usage
        else:
            slice_usage, usage = r.usage, usage + r.usage
        if slice_usage > MAX_VOICE_SECONDS and t.voice:
            raise SessionError("usage", f"{slice_usage} seconds in one record: at most {MAX_VOICE_SECONDS} (31 days)")
        last, final = r.sequence, r.final
        sequences.append(r.sequence)
    new_missing = [s for s in new_missing if s not in sequences]
    missing.extend(new_missing)
    changes = {"last_sequence": last, "final": final, "missing": tuple(missing), "held": tuple(held)}
    return _walk(t, state, usage, bundle_used, outcome, tuple(sequences), tuple(new_missing), changes)


def _walk(t: Tariff, state: SessionState, u1: Decimal, bundle_used, outcome, sequences, new_missing, changes):
    u0 = state.usage
    dest = t.dest
    remaining = {b.id: b.amount - bundle_used.get(b.id, ZERO) for b in dest.bundles}
    used: dict[str, Decimal] = {}
    cost = state.cost_exact.rescaled(t.den)
    connect_due = state.billed == 0 and t.ceil(u1) > 0
    count_before = t.count(state.billed)
    capped = False
    disconnect_at = state.disconnect_at
    raw = []
    fee_charged = ZERO
    for p in pieces(t, u0, u1, remaining, used):
        cap = t.caps[p.band]
        fee = ZERO
        if connect_due:
            connect_due = False
            before = cost
            cost, fee, cut = charge(cost, p.rate.connect_fee * t.den, cap)
            fee_charged = fee / t.den
            if cut:
                capped = True
                if cap[1] == "disconnect" and disconnect_at is None:
                    disconnect_at = connect_reached(t, before, cap)
        before = cost
        if disconnect_at is not None and p.plo >= disconnect_at:
            charged, cut = ZERO, amount(t, p, p.phi) > 0  # after the disconnect point nothing is charged
        else:
            cost, charged, cut = charge(cost, amount(t, p, p.phi), cap)
        if cut:
            capped = True
            if cap[1] == "disconnect" and disconnect_at is None:
                disconnect_at = reached(t, before, p)
        start = t.start + timedelta(microseconds=int(p.pa * MILLION)) if t.voice and p.pa else t.start
        count = t.count(p.phi)
        raw.append(
            (
                start,
                p.pb - p.pa,
                p.phi - p.plo,
                count - count_before,
                p.rate.id,
                p.band,
                p.bundle_id,
                fee_charged if fee else ZERO,
                (fee + charged) / t.den,
            )
        )
        count_before = count
    precise = cost.precise()
    total = precise.quantize(t.quantum, t.rounding)
    slice_cost = total - state.cost
    by_line: dict[str, Decimal] = {}
    segments = []
    for s, usage, billed, incs, rid, band, bid, fee, amt in raw:
        key = dest.line_prefix + band
        by_line[key] = by_line.get(key, ZERO) + amt
        segments.append(Segment(s, usage, billed, incs, rid, dest.id, dest.group, band, bid, fee, amt))
    bundles = dict(state.bundle_units_used)
    for k, v in used.items():
        bundles[k] = bundles.get(k, ZERO) + v
    billed = t.ceil(u1)
    new_state = replace(
        state,
        usage=u1,
        billed=billed,
        increments=t.count(billed),
        connect_fee=state.connect_fee + fee_charged,
        cost_exact=cost,
        precise_cost=precise,
        cost=total,
        bundle_units_used=tuple(bundles.items()),
        capped=state.capped or capped,
        disconnect_at=disconnect_at,
        **changes,
    )
    rated = RatedSlice(
        session_id=state.session_id,
        outcome=outcome,
        sequences=sequences,
        reason="",
        missing=new_missing,
        meter=t.meter,
        currency=t.currency,
        destination_id=dest.id,
        destination_group=dest.group,
        usage=u1 - u0,
        billed=billed - state.billed,
        increments=new_state.increments - state.increments,
        cost=slice_cost,
        precise_cost=precise - state.precise_cost,
        connect_fee=fee_charged,
        capped=capped,
        disconnect=disconnect_at is not None,
        disconnect_at=disconnect_at,
        final=new_state.final,
        segments=tuple(segments),
        bundle_units_used=used,
        lines=allocate_lines(by_line, slice_cost, t.quantum, t.method) if by_line else (),
    )
    return new_state, rated


def _nothing(plan, state: SessionState, outcome: Outcome, sequences, reason: str, missing=()) -> RatedSlice:
    return RatedSlice(
        session_id=state.session_id,
        outcome=outcome,
        sequences=tuple(sequences),
        reason=reason,
        missing=tuple(missing),
        meter=state.meter,
        currency=plan.currency,
        destination_id=state.destination_id,
        destination_group=state.destination_group,
        usage=ZERO,
        billed=ZERO,
        increments=0,
        cost=ZERO,
        precise_cost=ZERO,
        connect_fee=ZERO,
        capped=False,
        disconnect=state.disconnect_at is not None,
        disconnect_at=state.disconnect_at,
        final=state.final,
        segments=(),
        bundle_units_used={},
        lines=(),
    )
