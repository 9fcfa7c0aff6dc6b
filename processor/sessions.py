"""Telecom session records in the stream: interim and final records of one call rated as one growing record.

A usage event with a `session` (schemas/event.py: id, sequence, start, total_usage, final) is rated by
`rating.telecom.sessions.rate_session_record` against the session's state, kept in the partition's state
under `s|<tenant>\\x1f<customer>\\x1f<session id>` as `[state JSON (session_codec), offset]`: written with
the batch (so the changelog copies it) and, like every running total, never applied twice (`apply_writes`
skips a write at an offset already reached). The rules (docs/telecom.md, *Sessions in the stream*):

- the plan, the billing period and the time bands are those of the session's `start` (answer time), so
  every record of a session lands in one period; bundle use is the customer's period bundle state
  (`b|`, shared with single CDRs), and the meter's running total (`c|`) grows by each slice's usage;
- numbering: from 1 (3GPP partial records), or from 0 when the first record seen is number 0
  (Diameter CC-Request-Number);
- a repeated sequence is a duplicate (counted `duplicate`, nothing charged or written); a record a
  later `total_usage` record already covered is `late` (counted `duplicate`, nothing charged);
- a record after a gap (and carrying only its slice) is held: kept in the session state, uncharged,
  counted `held` and logged with the missing numbers; it is rated when the missing record arrives
  (that record's rated row then carries the held slices' usage and cost too);
- the final record releases what is held: when the final record is (or a held record is) final and a
  gap is still open, the held records are rated as if the missing ones carried no usage
  (`release_held`), logged with the missing numbers. So does a timeout, judged on Kafka timestamps
  (so a replay decides the same): a record of the session received `HOLD_TIMEOUT_MS` (10 minutes) or
  more after the oldest held one releases them all with it. A session whose records stop behind a gap is
  released by the clock instead: every held session has a state key of its own in its partition's held index,
  `h|held|<session key>` (`held_key`: `[[held since, tenant, customer], offset]`, about 80 bytes), written by
  the batch that holds the session and deleted (a None write: a RocksDB delete and a changelog tombstone) by the
  one that releases it; the partition store keeps the committed index in memory (processor/store.py `held`,
  rebuilt by a prefix scan when the store is opened or restored). The processor's tick
  (processor/balances.py `Balances.tick`) takes its candidates from that index, confirms each in the partition's
  latest state view (a session held only by a batch not yet committed waits one tick) and releases those held
  `HOLD_TIMEOUT_MS` or more by the wall clock in
  two phases. First it decides (`decide_release`): the session's state records the release and its identity
  (`DECIDED`: the newest held record's event id and offset, which had no rated record) and the index entry is
  marked, committed with no output. Then (`release_timed_out`) it releases in a batch of its own that commits
  the session, the running totals, the index and the balance debit together. A crash before that commit leaves
  the decision committed: the next tick releases again, identically, or a record of the session read first
  releases under the decided identity (`rate_session_event`: a record at or before the newest held one after
  the decided release, which covers it; a later one with it, in one row). Either way every row carrying the
  released slices has that one identity (ClickHouse keeps the later one). A final record with `total_usage`
  needs no release: its total covers the missing slices;
- every hold and every release is reported: the partition's outbox, `h|outbox` (`OUTBOX_KEY`), keeps the
  messages this partition's records caused (`out`: a `session.held` notification per held record, a
  `session.released` one per release with the sequences, the missing numbers and why, and the one `disconnect`
  provisioning command of a session whose cost reached a `disconnect` cap) until the batch's outputs take them
  (`Balances.after_batch` produces them with the batch and deletes the entry), so they go out exactly when the
  batch's state commits, and again, byte for byte, if a crash repeats the batch (ids are deterministic). An
  outbox emptied every batch is never cut (a batch's messages all go out, however many); one whose messages
  earlier batches left (`CARRIED`: a processor without balances; the faust engine, whose state cannot tell)
  keeps at most `OUTBOX_MAX`: the oldest notifications are dropped, logged, never a provisioning command;
- earlier versions kept the held index and the outbox in one entry per partition, `h|sessions` (`LEGACY_KEY`);
  the tick's first pass over a partition whose store still has it moves it to the keys above in a batch of its
  own (`upgrade`), whose messages go out with it;
- the rated record is dated at the session's start (`time`) and carries `session_id` (and `final` "true" on
  the record that ends the session) in its dimensions;
- a finished session (final record rated, nothing held) keeps only `{"closed": last sequence, "missing",
  "usage", "cost"}` (about 60 bytes instead of the full state): enough to tell a repeat (duplicate) or a
  covered record (late) from a record after the end (refused, `session.sequence`). The store deletes it once the
  dedup window has passed since it was written (processor/store.py), like the event ids: a record of the
  session arriving after that is rated as a new session.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from meterstream.processor.rate import (
    AMOUNT_MAX,
    AMOUNT_MAX_INTEGER_DIGITS,
    AMOUNT_SCALE,
    RatingError,
    bundle_key,
    cumulative_key,
)
from meterstream.rating.catalog import PlanSource
from meterstream.rating.money import EXACT
from meterstream.rating.telecom import NoRate
from meterstream.rating.telecom.session_codec import decode_state, encode_state
from meterstream.rating.telecom.session_rules import rules_for
from meterstream.rating.telecom.sessions import (
    RatedSlice,
    SessionError,
    SessionRecord,
    SessionState,
    rate_session_record,
    release_held,
)
from meterstream.rating.telecom.walk import resolve
from meterstream.schemas.event import QUANTITY_MAX, QUANTITY_MAX_INTEGER_DIGITS, QUANTITY_SCALE, UsageEvent, format_time
from meterstream.schemas.rated import RatedUsage

log = logging.getLogger(__name__)
SESSION_PREFIX = "s|"
HOLD_TIMEOUT_MS = 10 * 60_000  # held records are released when a record of the session comes this much later
# per held session: `h|held|<session key>` -> [[held since, tenant, customer(, True once its release is decided)],
# offset], deleted by its release; the store keeps the partition's in memory (processor/store.py `held`)
HELD_PREFIX = "h|held|"
# per partition: the messages waiting to go out, `[{"out": [...](, "carried": n)}, offset]`, deleted when taken
OUTBOX_KEY = "h|outbox"
# earlier versions' one entry per partition: `[{"held": {session key: entry}, "out": [...]}, offset]` (`upgrade`)
LEGACY_KEY = "h|sessions"
# the outbox of a partition whose messages are not taken (a processor without balances, the faust engine) keeps at
# most this many (the oldest notifications dropped, never a provisioning command); one that a producer empties every
# batch (Balances) is never cut: its messages are those of one batch (no earlier batch left any: `CARRIED` absent)
OUTBOX_MAX = 1_000
CARRIED = "carried"  # in the outbox entry: how many messages earlier batches left in it (absent: none)
HELD, RELEASED, RELEASE_FAILED = "session.held", "session.released", "session.release_failed"
# in an open session's stored state: the identity of the release by the clock decided for it (`decide_release`)
DECIDED = "release"
BY_CLOCK = f"held {HOLD_TIMEOUT_MS // 60_000} minutes or more, no further record: the missing ones are taken as empty"
DISCONNECT = "disconnect"
MAX_COST = "session_max_cost"
_ADD = EXACT.add
# the pure rater's field names -> the event's
_FIELDS = {
    "sequence": "session.sequence",
    "session_id": "session.id",
    "start": "session.start",
    "usage": "quantity",
    "total_usage": "quantity",
}


def session_key(tenant: str, customer: str, session_id: str) -> str:
    return f"{SESSION_PREFIX}{tenant}\x1f{customer}\x1f{session_id}"


class SessionResult(NamedTuple):
    """What one session record does: `outcome` (rated, released, duplicate, late, held), the rated record
    (rated and released only), the state writes (none for a duplicate) and the reason (others)."""

    outcome: str
    record: RatedUsage | None
    writes: list[tuple[str, Any]]
    reason: str


def rate_session_event(
    catalog: PlanSource,
    state: MutableMapping[str, Any],
    event: UsageEvent,
    partition: int,
    offset: int,
    received_ms: int | None = None,
) -> SessionResult:
    """Rate a session record against its session's state; reads `state` only (the caller writes).

    `received_ms` is the message's Kafka timestamp (None: it has none), which a replay sees again: records
    held for `HOLD_TIMEOUT_MS` or more by the time another record of the session arrives are released. A
    session whose release by the clock is decided (`decide_release`) is released first, by any record of it,
    under the decided identity: a record at or before its newest held one is then covered (or a repeat), a
    later one is released with the held ones, in the same row.

    Raises `RatingError` (field named as the event names it) for a record that cannot be rated: no plan,
    a meter that is not a telecom meter of the plan, no rate, a sequence after the final record, a start
    or destination differing from the session's, too many records held.
    """
    s = event.session
    assert s is not None
    plan = catalog.plan_for(event.tenant, event.customer, event.meter, s.start)
    if plan is None:
        raise RatingError("customer", catalog.no_plan_reason(event.tenant, event.customer, s.start))
    if event.meter not in plan.telecom_meters:
        raise RatingError("session", f"plan {plan.id!r} does not rate meter {event.meter!r} as telecom sessions")
    period = catalog.period_for(event.tenant, event.customer, event.meter, s.start) or format_time(s.start)[:7]
    skey = session_key(event.tenant, event.customer, s.id)
    current = state.get(skey)
    if current is not None and "closed" in current[0]:
        return _closed(current[0], s.sequence, skey, offset)
    try:
        before: SessionState | None = decode_state(current[0]) if current is not None else None
    except SessionError as exc:
        raise RatingError("session", f"stored state of session {s.id!r} unreadable ({exc})") from None
    held_since = current[0].get("held_since") if current is not None else None
    bkey = bundle_key(event.tenant, event.customer, period)
    stored = state.get(bkey)
    used = {k: Decimal(v) for k, v in stored[0].items()} if stored is not None else {}
    record = SessionRecord(
        session_id=s.id,
        sequence=s.sequence,
        meter=event.meter,
        start=s.start,
        dimensions=event.dimensions,
        usage=None if s.total_usage else event.quantity,
        total_usage=event.quantity if s.total_usage else None,
        final=s.final,
    )
    first = 0 if before is None and s.sequence == 0 else 1
    decided = _decided_release(current, before)
    try:
        since = held_since if held_since is not None and before is not None and before.held else received_ms
        if decided is not None and before is not None and s.sequence <= before.held[-1].sequence:
            # the release decided by the clock first, as the tick does it; the record is then covered or a repeat
            after, rated = release_held(plan.telecom, before, bundle_used=used)
            after = rate_session_record(plan.telecom, after, record, bundle_used=used, first_sequence=first)[0]
        else:
            after, rated = rate_session_record(plan.telecom, before, record, bundle_used=used, first_sequence=first)
        if rated.outcome == "held" and (  # the arriving record was held: it and the others go out together
            decided is not None
            or any(h.final for h in after.held)
            or (received_ms is not None and since is not None and received_ms - since >= HOLD_TIMEOUT_MS)
        ):
            after, rated = release_held(plan.telecom, after, bundle_used=used)
    except NoRate as exc:
        raise RatingError(exc.field, f"{exc.reason}: {exc.detail}" if exc.field == "quantity" else exc.reason) from None
    except SessionError as exc:
        raise RatingError(_FIELDS.get(exc.field, exc.field), exc.reason) from None
    if rated.outcome == "duplicate":
        return SessionResult("duplicate", None, [], rated.reason)
    origin = Origin(event.tenant, event.customer, event.id, event.subject or "", event.source or "", event.meter,
                    s.start, event.dimensions, s.id)  # fmt: skip
    held = (origin.id, offset, origin.subject, origin.source) if rated.outcome == "held" else _held_event(current)
    writes: list[tuple[str, Any]] = []
    at = _iso_ms(received_ms) if received_ms is not None else format_time(event.time)
    why = None
    if decided is not None:  # the decided release's identity: the row a tick may have produced before a crash
        origin = origin._replace(id=decided[0], subject=decided[2], source=decided[3])
        if before is not None and rated.sequences == tuple(h.sequence for h in before.held):
            why = BY_CLOCK  # released as decided, nothing added: the tick's row and notification, time included
            origin = origin._replace(dimensions=before.held[-1].dimensions)
            at = _iso_ms(since + HOLD_TIMEOUT_MS) if since is not None else at
    if rated.outcome in ("late", "held"):
        writes.append((skey, [_open(after, since, held), offset]))
        if rated.outcome == "held":
            log.warning("session %r of %s/%s: %s", s.id, event.tenant, event.customer, rated.reason)
        _report(state, writes, origin, before, after, rated, since, offset, at, plan)
        return SessionResult(rated.outcome, None, writes, rated.reason)
    if rated.missing:
        log.warning(
            "session %r of %s/%s: sequence %s not seen, rated as empty (%s)",
            s.id,
            event.tenant,
            event.customer,
            ", ".join(map(str, rated.missing)),
            rated.outcome,
        )
    writes.append((skey, [_closing(after) if after.final and not after.held else _open(after, since, held), offset]))
    record = _record(state, origin, plan, period, rated, (bkey, used), writes, partition, offset)
    _report(state, writes, origin, before, after, rated, since, offset, at, plan, why)
    return SessionResult(rated.outcome, record, writes, "")


class Origin(NamedTuple):
    """Where a rated session row comes from: the record that rated it (or, for a release by the clock, decided
    or done, the newest held record), and the session's meter, start and dimensions."""

    tenant: str
    customer: str
    id: str
    subject: str
    source: str
    meter: str
    start: datetime
    dimensions: Mapping[str, str]
    session_id: str


def _iso_ms(ms: int) -> str:
    return format_time(datetime.fromtimestamp(ms / 1000, UTC))


def _decided_release(current: Any, before: SessionState | None) -> tuple[str, int, str, str] | None:
    """The identity (event id, offset, subject, source) of the release by the clock decided for a stored open
    session (`decide_release`), or None: none decided, or nothing held any more."""
    if current is None or before is None or not before.held:
        return None
    found = current[0].get(DECIDED)
    return tuple(found) if found else None  # type: ignore[return-value]


def _held_event(current: Any) -> tuple[str, int, str, str] | None:
    """The newest held record's (event id, offset, subject, source) kept in a stored open session (None: none)."""
    if current is None:
        return None
    found = current[0].get("held_event")
    return tuple(found) if found else None  # type: ignore[return-value]


def _report(state: Any, writes: list[tuple[str, Any]], origin: Origin, before: SessionState | None,
            after: SessionState, rated: RatedSlice, since: int | None, offset: int, at: str,
            plan: Any, why: str | None = None) -> None:  # fmt: skip
    """Add to `writes` the session's held-index key when its held records change (put while it holds some,
    deleted, None, when it no longer does) and the partition's outbox with the messages that say so (module
    docstring)."""
    before_held = {h.sequence for h in before.held} if before is not None else set()
    after_held = {h.sequence for h in after.held}
    messages = []
    if after_held - before_held:
        messages.append(_note(origin, HELD, at, sorted(after_held - before_held), {
            "waiting_for": list(rated.missing), "reason": rated.reason}))  # fmt: skip
    if before_held - after_held:
        messages.append(_release_note(origin, before, rated, sorted(before_held - after_held), at, why))
    if rated.disconnect and (before is None or before.disconnect_at is None):
        messages.append(_disconnect(origin, plan, after, rated, at))
    hkey = held_key(session_key(origin.tenant, origin.customer, origin.session_id))
    if after_held:
        entry = [since, origin.tenant, origin.customer]
        current = state.get(hkey)  # written once per hold: unchanged while the session stays held
        if current is None or current[0][:3] != entry:
            writes.append((hkey, [entry, offset]))
    elif before_held:
        writes.append((hkey, None))
    if messages:
        writes.append(outbox_write(state, messages, offset))


def outbox_write(state: Any, messages: list[dict[str, Any]], offset: int) -> tuple[str, Any]:
    """The write (tagged `offset`) that adds `messages` to the partition's outbox (`OUTBOX_KEY`): after those
    waiting there, cut to `OUTBOX_MAX` when earlier batches left messages in it (`CARRIED`, module docstring)."""
    current = state.get(OUTBOX_KEY)
    doc = current[0] if current is not None else {"out": []}
    carried = _carried(state, doc)
    out = [*doc["out"], *messages]
    if len(out) > OUTBOX_MAX and carried != 0:
        out = _capped(out)
    new: dict[str, Any] = {"out": out}
    if carried:
        new[CARRIED] = carried
    return (OUTBOX_KEY, [new, offset])


def _carried(state: Any, doc: dict[str, Any]) -> int | None:
    """How many of the outbox's messages earlier batches left (0: its messages are this batch's only, so a producer
    empties it every batch; None: cannot tell, a state that does not show its batch's writes, the faust view)."""
    pending = getattr(state, "pending", None)
    if pending is None:
        return None
    return doc.get(CARRIED, 0) if OUTBOX_KEY in pending else len(doc["out"])


def _capped(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An outbox whose messages earlier batches left (nobody takes them) cut to `OUTBOX_MAX` messages: the oldest
    notifications dropped, logged; a provisioning command (`disconnect`) is never dropped."""
    drop = len(out) - OUTBOX_MAX
    kept = []
    for m in out:
        if drop > 0 and m["topic"] != "provisioning":
            drop -= 1
        else:
            kept.append(m)
    log.error("session outbox: %d messages not taken, the oldest %d notifications dropped", len(out),
              len(out) - len(kept))  # fmt: skip
    return kept


def _note(origin: Origin, kind: str, at: str, sequences: list[int], data: dict[str, Any]) -> dict[str, Any]:
    """An outbox notification; its id is made from `key` (processor/balances.py turns it into a `Notification`)."""
    return {"topic": "notifications", "kind": kind, "tenant": origin.tenant, "customer": origin.customer,
            "key": [kind, origin.session_id, *sequences], "at": at,
            "data": {"session_id": origin.session_id, "meter": origin.meter, "sequences": sequences,
                     **data}}  # fmt: skip


def _release_note(origin: Origin, before: Any, rated: RatedSlice, released: list[int], at: str,
                  why: str | None = None) -> dict[str, Any]:  # fmt: skip
    if why is None and rated.outcome == "rated":
        why = "the missing records arrived"
    elif why is None and (any(h.final for h in before.held) or rated.final):
        why = "the final record is held: the missing records are taken as empty"
    elif why is None:
        why = f"held {HOLD_TIMEOUT_MS // 60_000} minutes or more: the missing records are taken as empty"
    return _note(origin, RELEASED, at, released, {
        "missing": list(rated.missing), "reason": why, "usage": format(rated.usage, "f"),
        "amount": format(rated.cost, "f"), "currency": rated.currency})  # fmt: skip


def _disconnect(origin: Origin, plan: Any, after: SessionState, rated: RatedSlice, at: str) -> dict[str, Any]:
    """The session's one `disconnect` command: its cost reached a `disconnect` cap (rating/telecom/session_rules.py)."""
    band, cap = _disconnect_cap(plan, after, rated)
    figures = {"session_id": origin.session_id, "meter": origin.meter, "band": band,
               "max_cost": None if cap is None else format(cap, "f"), "cost": format(after.cost, "f"),
               "currency": rated.currency, "disconnect_at": format(rated.disconnect_at, "f"),
               "usage": format(after.usage, "f"), "destination": after.destination_id}  # fmt: skip
    return {"topic": "provisioning", "command": DISCONNECT, "reason": MAX_COST, "tenant": origin.tenant,
            "customer": origin.customer, "key": [DISCONNECT, MAX_COST, origin.session_id], "at": at,
            "cause": f"session {origin.session_id!r} cost {figures['cost']} {rated.currency} reached the"
                     f" {band} band's maximum {figures['max_cost']}: cut at {figures['disconnect_at']}",
            "state": figures}  # fmt: skip


def _disconnect_cap(plan: Any, after: SessionState, rated: RatedSlice) -> tuple[str | None, Decimal | None]:
    """(band, cap amount) of the `disconnect` cap reached: the band of the slice's first piece under such a cap
    (a cap reached by the connect fee: the first piece), else the first band with one."""
    dims = {"destination": after.destination} if after.destination is not None else {}
    rules = rules_for(plan.telecom, None)
    t = resolve(plan.telecom, meter=after.meter, start=after.start, dimensions=dims, rules=rules)
    caps = {b: c for b, c in t.caps.items() if c is not None and c[1] == "disconnect"}
    for seg in rated.segments:
        if seg.band in caps:
            return seg.band, caps[seg.band][0]
    band = next(iter(sorted(caps)), None)
    return band, caps[band][0] if band is not None else None


def _open(state: SessionState, since: int | None, held: tuple[str, int, str, str] | None = None) -> dict[str, Any]:
    """The stored state of an open session, with when its oldest held record was received (if known) and the
    newest held record's event id and offset (a release by the clock names its rated record after them)."""
    doc = encode_state(state)
    if state.held:
        if since is not None:
            doc["held_since"] = since
        if held is not None:
            doc["held_event"] = list(held)
    return doc


def _dimensions(origin: Origin, final: bool) -> dict[str, str]:
    """The record's dimensions and the session's id (and `final` on the record that ends it), which the rated
    record carries for its readers (authorization holds: entities/holds.py `session_of`; analysts)."""
    dims = {**origin.dimensions, "session_id": origin.session_id}
    if final:
        dims["final"] = "true"
    return dims


def _closing(state: SessionState) -> dict[str, Any]:
    """What is kept of a finished session: enough to tell a repeat (duplicate) or a covered record (late)
    from a record after the end (refused), and what it cost; about 60 bytes instead of the full state."""
    return {"closed": state.last_sequence, "missing": list(state.missing), "usage": str(state.usage),
            "cost": str(state.cost)}  # fmt: skip


def _closed(doc: dict[str, Any], seq: int, skey: str, offset: int) -> SessionResult:
    last, missing = doc["closed"], doc["missing"]
    if seq > last:
        raise RatingError("session.sequence", f"{seq} comes after the final record {last}")
    if seq in missing:
        rest = {**doc, "missing": [m for m in missing if m != seq]}
        return SessionResult("late", None, [(skey, [rest, offset])], "covered by a later total")
    return SessionResult("duplicate", None, [], f"sequence {seq} already rated (the session has ended)")


def _record(state, event: Origin, plan, period, rated: RatedSlice, bundles, writes, partition, offset,
            src_offset: int | None = None) -> RatedUsage:  # fmt: skip
    """The rated row of a rated (or released) slice, adding the running total and bundle use to `writes`
    (tagged `offset`); the row names `src_offset` (default `offset`) as its source."""
    bkey, used = bundles
    key = cumulative_key(event.tenant, event.customer, event.meter, period)
    current = state.get(key)
    total = _ADD(Decimal(current[0]), rated.usage) if current is not None else rated.usage
    if total > QUANTITY_MAX:
        raise RatingError(
            "quantity",
            f"the {period} total of meter {event.meter!r} would be {format(total, 'f')}, more than the"
            f" {QUANTITY_MAX_INTEGER_DIGITS} integer digits rated_usage.cumulative"
            f" (Decimal(38, {QUANTITY_SCALE})) holds",
        )
    if not -AMOUNT_MAX <= rated.cost <= AMOUNT_MAX:
        raise RatingError(
            "amount",
            f"{format(rated.cost, 'f')} {plan.currency} has more than the {AMOUNT_MAX_INTEGER_DIGITS} integer"
            f" digits rated_usage.amount (Decimal(38, {AMOUNT_SCALE})) holds",
        )
    writes.append((key, [format(total, "f"), offset]))
    if rated.bundle_units_used:
        for bundle, units in rated.bundle_units_used.items():
            used[bundle] = _ADD(used[bundle], units) if bundle in used else units
        writes.append((bkey, [{k: format(v, "f") for k, v in used.items()}, offset]))
    line = rated.lines[0][0] if rated.lines else f"{event.meter}/{rated.destination_group}"
    return {
        "tenant": event.tenant,
        "id": event.id,
        "customer": event.customer,
        "subject": event.subject,
        "meter": event.meter,
        "time": format_time(event.start),  # the session's: its period, bands and plan
        "period": period,
        "quantity": format(rated.usage, "f"),
        "amount": format(rated.cost, "f"),
        "cumulative": format(total, "f"),
        "currency": plan.currency,
        "plan": plan.id,
        "line": line,
        "dimensions": _dimensions(event, rated.final),
        "source": event.source,
        "src_partition": partition,
        "src_offset": offset if src_offset is None else src_offset,
    }


# --- held records released by the clock (called from the processor's tick) -----------------------------------
def held_key(skey: str) -> str:
    """The state key of session `skey`'s entry in the partition's held index."""
    return f"{HELD_PREFIX}{skey}"


def _session_of(hkey: str) -> str:
    return hkey[len(HELD_PREFIX) :]


def timed_out(held: Mapping[str, Any], state: Mapping[str, Any] | None, now_ms: int,
              first_seen: dict[str, int] | None) -> list[str]:  # fmt: skip
    """The session keys of the partition's committed held index `held` (`PartitionStore.held`: held key -> value)
    whose oldest held record was received `HOLD_TIMEOUT_MS` or more before `now_ms` (the wall clock, or the
    partition's stream time: its newest Kafka timestamp read), each confirmed in `state` (the partition's latest
    view: a session released, decided or held anew by a batch not yet committed is left out). A session held
    without a Kafka timestamp is timed from when this process first saw it held (`first_seen`, kept by the
    caller; a restart starts that wait again), or left out (`first_seen` None: stream time). `state` None: nothing
    is confirmed and nothing returned, only `first_seen` kept (a partition with a backlog: the wall clock decides
    nothing there)."""
    due = []
    for hkey, (entry, _) in held.items():
        if entry[3:]:  # its release is decided already (`decide_release`)
            continue
        since = entry[0]
        if since is None and first_seen is None:
            continue
        skey = _session_of(hkey)
        start = since if since is not None else first_seen.setdefault(skey, now_ms)  # type: ignore[union-attr]
        if now_ms - start >= HOLD_TIMEOUT_MS and state is not None:  # None: only `first_seen` kept
            latest = state.get(hkey)
            if latest is not None and latest[0] == entry:
                due.append(skey)
    return sorted(due)


def hold_summary(held: Mapping[str, Any]) -> tuple[float, bool]:
    """Of a partition's held index: the earliest `held since` of its sessions not yet decided (`timed_out` finds
    none due before it is `HOLD_TIMEOUT_MS` old; -inf when one was held without a Kafka timestamp, which the caller
    times; +inf for none), and whether any session's release is decided (`decided` finds none otherwise)."""
    earliest, any_decided = float("inf"), False
    for entry, _ in held.values():
        if entry[3:]:
            any_decided = True
        elif entry[0] is None:
            earliest = float("-inf")
        elif entry[0] < earliest:
            earliest = entry[0]
    return earliest, any_decided


def held_keys(held: Mapping[str, Any]) -> set[str]:
    """The session keys of a partition's held index (`PartitionStore.held`)."""
    return {_session_of(hkey) for hkey in held}


def decided(held: Mapping[str, Any], state: Mapping[str, Any]) -> list[str]:
    """The session keys of the partition's committed held index `held` whose release by the clock is decided
    (`decide_release`), confirmed in `state` (the partition's latest view)."""
    found = []
    for hkey, (entry, _) in held.items():
        if entry[3:] and (latest := state.get(hkey)) is not None and latest[0][3:]:
            found.append(_session_of(hkey))
    return sorted(found)


def decide_release(state: Mapping[str, Any], skey: str, offset: int) -> list[tuple[str, Any]]:
    """Phase one of a release by the clock: the writes (tagged `offset`) that record, in the session's stored
    state (`DECIDED`) and in its held-index entry, that session `skey` is to be released and under which identity:
    the newest held record's event id and offset. No output depends on the decision before the caller has
    committed them; from then on every path that releases the session (`release_timed_out`, or a record of the
    session, `rate_session_event`) names the row alike, so a crash in between never leaves two rows.
    A session no longer held just leaves the index."""
    hkey = held_key(skey)
    entry = state.get(hkey)
    current = state.get(skey)
    doc = current[0] if current is not None else None
    if entry is None or doc is None or "closed" in doc or not doc.get("held"):
        return [drop_held(skey)]
    newest = doc["held"][-1]
    identity = _held_event(current) or (f"{doc['session_id']}#{newest['sequence']}", current[1], "", "")
    return [(skey, [{**doc, DECIDED: list(identity)}, offset]), (hkey, [[*entry[0][:3], True], offset])]


def release_timed_out(
    catalog: PlanSource, state: MutableMapping[str, Any], skey: str, partition: int, offset: int, now_ms: int
) -> SessionResult:
    """Release the held records of session `skey` (its entry in the partition's held index) as if the
    missing ones carried no usage: the rated row, dated like the session's others, is named after the newest
    held record (event id and source offset) as decided (`decide_release`), and the writes are tagged `offset`
    (the partition's committed position: the caller commits them as a batch of its own). Reads `state` only. A
    session no longer held just leaves the index. Raises `RatingError` as `rate_session_event` does (the plan is
    gone, the total would overflow): the caller reports it and drops the session from the index (a later record
    of the session still releases it, under the decided identity)."""
    entry = state.get(held_key(skey))
    current = state.get(skey)
    doc = current[0] if current is not None else None
    if entry is None or doc is None or "closed" in doc or not doc.get("held"):
        return SessionResult("released", None, [drop_held(skey)], "nothing held")
    since, tenant, customer = entry[0][:3]
    try:
        before = decode_state(doc)
    except SessionError as exc:
        raise RatingError("session", f"stored state of session {doc.get('session_id')!r} unreadable ({exc})") from None
    plan = catalog.plan_for(tenant, customer, before.meter, before.start)
    if plan is None:
        raise RatingError("customer", catalog.no_plan_reason(tenant, customer, before.start))
    period = catalog.period_for(tenant, customer, before.meter, before.start) or format_time(before.start)[:7]
    bkey = bundle_key(tenant, customer, period)
    stored = state.get(bkey)
    used = {k: Decimal(v) for k, v in stored[0].items()} if stored is not None else {}
    try:
        after, rated = release_held(plan.telecom, before, bundle_used=used)
    except NoRate as exc:
        raise RatingError(exc.field, exc.reason) from None
    except SessionError as exc:
        raise RatingError(_FIELDS.get(exc.field, exc.field), exc.reason) from None
    newest = before.held[-1]
    held = (_decided_release(current, before) or _held_event(current)
            or (f"{before.session_id}#{newest.sequence}", current[1], "", ""))  # fmt: skip
    origin = Origin(tenant, customer, held[0], held[2], held[3], before.meter, before.start, newest.dimensions,
                    before.session_id)  # fmt: skip
    at = _iso_ms((since if since is not None else now_ms - HOLD_TIMEOUT_MS) + HOLD_TIMEOUT_MS)
    log.warning("session %r of %s/%s: released by the clock (held since %s), sequence %s taken as empty",
                before.session_id, tenant, customer, since, ", ".join(map(str, rated.missing)) or "none")  # fmt: skip
    writes: list[tuple[str, Any]] = [(skey, [_closing(after) if after.final else _open(after, None), offset])]
    record = _record(state, origin, plan, period, rated, (bkey, used), writes, partition, offset, held[1])
    _report(state, writes, origin, before, after, rated, since, offset, at, plan, BY_CLOCK)
    return SessionResult("released", record, writes, BY_CLOCK)


def drop_held(skey: str) -> tuple[str, Any]:
    """The write that deletes session `skey`'s entry from the partition's held index."""
    return (held_key(skey), None)


def take_outbox(state: MutableMapping[str, Any]) -> list[dict[str, Any]]:
    """The messages waiting in the partition's outbox, deleting it in `state`, for the caller that produces them
    with the batch whose state commits this (processor/balances.py)."""
    current = state.get(OUTBOX_KEY)
    if current is None or not current[0]["out"]:
        return []
    state[OUTBOX_KEY] = None
    return current[0]["out"]


def upgrade(state: Mapping[str, Any], offset: int) -> list[tuple[str, Any]]:
    """The writes (tagged `offset`) that move a partition's `LEGACY_KEY` entry, written by earlier versions (the
    held index and the outbox in one value), to the keys of this version, and delete it: each session it lists
    that is still held and not indexed since gets its held-index entry as it was (its decided flag too), its
    messages go to the outbox. None when there is no such entry. The processor's tick commits them as a batch of
    their own, the messages produced with it."""
    current = state.get(LEGACY_KEY)
    if current is None:
        return []
    doc = current[0]
    writes: list[tuple[str, Any]] = []
    for skey, entry in doc.get("held", {}).items():
        session = state.get(skey)
        if state.get(held_key(skey)) is None and session is not None and session[0].get("held"):
            writes.append((held_key(skey), [entry, offset]))
    if doc.get("out"):
        writes.append(outbox_write(state, doc["out"], offset))
    writes.append((LEGACY_KEY, None))
    return writes
