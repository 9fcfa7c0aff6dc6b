"""One input message through parse -> dedup -> rate, against a state mapping. Pure: no Kafka, no clock."""

from __future__ import annotations

from collections.abc import MutableMapping
from enum import Enum
from typing import Any, NamedTuple

import orjson

from meterstream.processor.dedup import Verdict, check, dedup_key, origin_conflict, origin_is_new, origin_key, remember
from meterstream.processor.rate import RatingError, rate_event
from meterstream.processor.sessions import rate_session_event
from meterstream.rating.catalog import PlanSource
from meterstream.schemas.event import InvalidEvent, TimeWindow, UsageEvent, parse_event
from meterstream.schemas.rated import DeadLetter, RatedUsage


class Kind(Enum):
    RATED = "rated"
    REPLAYED = "replayed"
    DUPLICATE = "duplicate"
    DEAD_LETTER = "dead_letter"
    HELD = "held"  # a session record behind a gap in its sequence: kept, not yet charged (processor/sessions.py)


class Outcome(NamedTuple):  # named tuples: one is made per message, a frozen dataclass costs 3x more
    kind: Kind
    rated: RatedUsage | None = None
    dead_letter: DeadLetter | None = None


class Position(NamedTuple):
    """Where a message sits in Kafka: identifies it across replays.

    `timestamp_ms` is the message's Kafka timestamp (None or negative: the message has none); an
    event's time is judged against it, so a replay of the message makes the same decision.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int | None = None


class Priced(NamedTuple):
    """A new event, priced and not yet written: its dedup key, rated record and running-total writes.

    A session record (processor/sessions.py) may write state without a record of its own: `kind` HELD
    (behind a gap) or DUPLICATE (a record a later total already covered)."""

    dkey: str
    record: RatedUsage | None
    writes: list[Any]
    kind: Kind = Kind.RATED
    origin: tuple[str, str] | None = None  # (its origin's entry key, kind) when that entry is to be written


def evaluate(
    catalog: PlanSource,
    state: MutableMapping[str, Any],
    value: bytes,
    pos: Position,
    now_ms: int,
    window_ms: int,
    time_window: TimeWindow | None = None,
) -> Outcome | Priced:
    """Parse, dedup and rate one message, reading `state` only.

    Returns the final Outcome of a message that writes nothing (a dead letter, a duplicate, a replay of
    a position whose state was committed with its input offset, so whose output was delivered), or the
    Priced event that `commit` writes. With a `time_window` (the engines pass the settings' one), the
    event's time must lie in it around the message's Kafka timestamp, which a replay sees again, or
    around `now_ms` (the caller's batch clock) when the message has none; without one (tools, tests)
    only the time's form is checked.
    """
    try:
        if time_window is None:
            event = parse_event(value)
        else:
            ts = pos.timestamp_ms
            event = parse_event(value, ts if ts is not None and ts >= 0 else now_ms, time_window)
    except InvalidEvent as exc:
        dl = _dead_letter("parse", exc.field, exc.reason, value, pos, _named_id(value))
        return Outcome(Kind.DEAD_LETTER, dead_letter=dl)
    dkey = dedup_key(event.tenant, event.id)
    verdict, _ = check(state, dkey, pos.partition, pos.offset, now_ms, window_ms)
    if verdict is Verdict.DUPLICATE:
        return Outcome(Kind.DUPLICATE)
    if verdict is Verdict.REPLAY:
        return Outcome(Kind.REPLAYED)
    origin = None
    if event.origin is not None:  # the client event it came from: another kind of it is a duplicate (dedup.py)
        okey = origin_key(event.tenant, event.origin.key)
        seen = state.get(okey)
        if origin_conflict(seen, event.origin.kind, now_ms, window_ms):
            return Outcome(Kind.DUPLICATE)
        origin = (okey, event.origin.kind) if origin_is_new(seen, now_ms, window_ms) else None
    try:
        if event.session is not None:
            out = _session(catalog, state, event, pos, dkey)
            return out._replace(origin=origin) if isinstance(out, Priced) else out
        record, writes = rate_event(catalog, state, event, pos.partition, pos.offset)
    except RatingError as exc:
        dl = _dead_letter("rate", exc.field, exc.reason, value, pos, event.id, event.tenant)
        return Outcome(Kind.DEAD_LETTER, dead_letter=dl)
    return Priced(dkey, record, writes, origin=origin)


_SESSION_KINDS = {"rated": Kind.RATED, "released": Kind.RATED, "held": Kind.HELD, "late": Kind.DUPLICATE}


def _session(catalog: PlanSource, state: MutableMapping[str, Any], event, pos: Position, dkey: str) -> Outcome | Priced:
    """A telecom session record (processor/sessions.py): a repeated sequence is a duplicate, nothing written."""
    ts = pos.timestamp_ms  # the Kafka timestamp (a replay sees it again) judges how long records were held
    received = ts if ts is not None and ts >= 0 else None
    result = rate_session_event(catalog, state, event, pos.partition, pos.offset, received)
    if result.outcome == "duplicate":
        return Outcome(Kind.DUPLICATE)
    return Priced(dkey, result.record, result.writes, _SESSION_KINDS[result.outcome])


def commit(state: MutableMapping[str, Any], priced: Priced, pos: Position, now_ms: int) -> Outcome:
    """Write a priced event: the dedup entry first, then its origin's entry when new, then the running totals it
    moves."""
    remember(state, priced.dkey, pos.partition, pos.offset, now_ms)
    if priced.origin is not None:
        okey, kind = priced.origin
        state[okey] = {"p": pos.partition, "o": pos.offset, "t": now_ms, "k": kind}
    apply_writes(state, priced.writes, pos.offset)
    return Outcome(priced.kind, rated=priced.record)


def process(
    catalog: PlanSource,
    state: MutableMapping[str, Any],
    value: bytes,
    pos: Position,
    now_ms: int,
    window_ms: int,
    *,
    time_window: TimeWindow | None = None,
) -> Outcome:
    """Classify and rate one message (`evaluate`), then write what a new event moves (`commit`).

    For engines that commit state together with the input offset, where a processed message is
    never seen again: a replay of a position yields REPLAYED with no output. An engine without that
    atomicity keeps what it needs to re-emit on its own (processor/faust_engine.py).
    """
    out = evaluate(catalog, state, value, pos, now_ms, window_ms, time_window)
    return commit(state, out, pos, now_ms) if isinstance(out, Priced) else out


def apply_writes(state: MutableMapping[str, Any], writes: list[Any], offset: int) -> None:
    """Apply running-total writes unless a write at this offset or later already landed."""
    for key, value in writes:
        current = state.get(key)
        if current is None or current[-1] < offset:
            state[key] = value


_ID_MAX = next(m.max_length for m in UsageEvent.model_fields["id"].metadata if hasattr(m, "max_length"))


def _named_id(value: bytes | None) -> str | None:
    """The `id` a refused event names, when it is a JSON object whose id is a string within the schema's length
    (so `dlq list` shows which event it was); None otherwise. Only on the refusal path: never for a good event."""
    try:
        data = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return None
    event_id = data.get("id") if isinstance(data, dict) else None
    return event_id if isinstance(event_id, str) and 0 < len(event_id) <= _ID_MAX else None


def _dead_letter(
    stage: str,
    field: str,
    reason: str,
    value: bytes,
    pos: Position,
    event_id: str | None = None,
    tenant: str | None = None,
) -> DeadLetter:
    return {
        "stage": stage,
        "field": field,
        "reason": reason,
        "topic": pos.topic,
        "partition": pos.partition,
        "offset": pos.offset,
        "key": pos.key.decode(errors="replace") if pos.key is not None else None,
        "raw": value.decode(errors="replace"),
        "event_id": event_id,
        "tenant": tenant,
    }
