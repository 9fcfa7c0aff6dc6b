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
  more after the oldest held one releases them all with it. There is no sweep by the clock: a session
  whose records stop behind a gap keeps its held records until one more arrives. A final record with
  `total_usage` needs no release: its total covers the missing slices;
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
from collections.abc import MutableMapping
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
from meterstream.rating.telecom.sessions import (
    RatedSlice,
    SessionError,
    SessionRecord,
    SessionState,
    rate_session_record,
    release_held,
)
from meterstream.schemas.event import QUANTITY_MAX, QUANTITY_MAX_INTEGER_DIGITS, QUANTITY_SCALE, UsageEvent, format_time
from meterstream.schemas.rated import RatedUsage

log = logging.getLogger(__name__)
SESSION_PREFIX = "s|"
HOLD_TIMEOUT_MS = 10 * 60_000  # held records are released when a record of the session comes this much later
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
    held for `HOLD_TIMEOUT_MS` or more by the time another record of the session arrives are released.

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
    try:
        after, rated = rate_session_record(plan.telecom, before, record, bundle_used=used, first_sequence=first)
        since = held_since if held_since is not None and before is not None and before.held else received_ms
        if rated.outcome == "held" and (  # the arriving record was held: it and the others go out together
            any(h.final for h in after.held)
            or (received_ms is not None and since is not None and received_ms - since >= HOLD_TIMEOUT_MS)
        ):
            after, rated = release_held(plan.telecom, after, bundle_used=used)
    except NoRate as exc:
        raise RatingError(exc.field, f"{exc.reason}: {exc.detail}" if exc.field == "quantity" else exc.reason) from None
    except SessionError as exc:
        raise RatingError(_FIELDS.get(exc.field, exc.field), exc.reason) from None
    if rated.outcome == "duplicate":
        return SessionResult("duplicate", None, [], rated.reason)
    writes: list[tuple[str, Any]] = []
    if rated.outcome in ("late", "held"):
        writes.append((skey, [_open(after, since), offset]))
        if rated.outcome == "held":
            log.warning("session %r of %s/%s: %s", s.id, event.tenant, event.customer, rated.reason)
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
    writes.append((skey, [_closing(after) if after.final and not after.held else _open(after, since), offset]))
    record = _record(state, event, plan, period, rated, (bkey, used), writes, partition, offset)
    return SessionResult(rated.outcome, record, writes, "")


def _open(state: SessionState, since: int | None) -> dict[str, Any]:
    """The stored state of an open session, with when its oldest held record was received (if known)."""
    doc = encode_state(state)
    if state.held and since is not None:
        doc["held_since"] = since
    return doc


def _dimensions(event: UsageEvent, final: bool) -> dict[str, str]:
    """The event's dimensions and the session's id (and `final` on the record that ends it), which the rated
    record carries for its readers (authorization holds: entities/holds.py `session_of`; analysts)."""
    dims = {**event.dimensions, "session_id": event.session.id}
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


def _record(state, event, plan, period, rated: RatedSlice, bundles, writes, partition, offset) -> RatedUsage:
    """The rated row of a rated (or released) slice, adding the running total and bundle use to `writes`."""
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
        "subject": event.subject or "",
        "meter": event.meter,
        "time": format_time(event.session.start),  # the session's: its period, bands and plan
        "period": period,
        "quantity": format(rated.usage, "f"),
        "amount": format(rated.cost, "f"),
        "cumulative": format(total, "f"),
        "currency": plan.currency,
        "plan": plan.id,
        "line": line,
        "dimensions": _dimensions(event, rated.final),
        "source": event.source or "",
        "src_partition": partition,
        "src_offset": offset,
    }
