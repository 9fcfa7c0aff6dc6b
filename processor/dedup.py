"""Deduplication by (tenant, id), tolerant of replays: a crash must never turn an event into a 'duplicate'.

The store remembers, per identity, the source position (partition, offset) where the event was first
seen and when: the entry is `{"p": partition, "o": offset, "t": epoch ms}` and nothing else (bytes per
remembered id matter). The same identity at another position is a duplicate (dropped, counted); at
the *same* position it is a replay of a message processed before a crash. The native engine commits
the store with the input offset, so its replays never reach an entry; an engine without that
atomicity keeps what it must re-emit in its own data (processor/faust_engine.py).

**Origins.** A usage event derived from a client event that yields several (one per meter it feeds: the
OpenMeter and Lago layers) carries that event's `origin` (schemas.event.Origin: key, kind). Its entry
`{"p", "o", "t", "k": kind}` (key `origin_key`, in the same `d|` namespace: packed, changelogged and purged with
the dedup entries by day) says which kind the key was first seen with; a new event whose origin has the same key
and another kind within the window is a duplicate (`origin_conflict`): a client event sent again with another
type or code is not charged again, as OpenMeter and Lago drop it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from enum import Enum
from typing import Any

DEDUP_PREFIX = "d|"


class Verdict(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    REPLAY = "replay"


def dedup_key(tenant: str, event_id: str) -> str:
    return f"{DEDUP_PREFIX}{tenant}\x1f{event_id}"


def origin_key(tenant: str, key: str) -> str:
    """The entry of an origin: `d|<tenant>\x1e<key>` (a tenant has no control characters, so it never equals an
    id's entry, `d|<tenant>\x1f<id>`)."""
    return f"{DEDUP_PREFIX}{tenant}\x1e{key}"


def origin_conflict(seen: dict[str, Any] | None, kind: str, now_ms: int, window_ms: int) -> bool:
    """Whether an origin's stored entry (None: none) makes a new event of `kind` a duplicate: the key was seen
    with another kind within the window."""
    return seen is not None and now_ms - seen["t"] <= window_ms and seen["k"] != kind


def origin_is_new(seen: dict[str, Any] | None, now_ms: int, window_ms: int) -> bool:
    """Whether an event's origin entry is to be written: none stored, or the stored one is older than the window."""
    return seen is None or now_ms - seen["t"] > window_ms


def check(
    store: MutableMapping[str, Any], key: str, partition: int, offset: int, now_ms: int, window_ms: int
) -> tuple[Verdict, dict[str, Any] | None]:
    """Classify one occurrence; an entry older than the window counts as forgotten (NEW)."""
    seen = store.get(key)
    if seen is None:
        return Verdict.NEW, None
    if seen["p"] == partition and seen["o"] == offset:
        return Verdict.REPLAY, seen
    if now_ms - seen["t"] > window_ms:
        return Verdict.NEW, None
    return Verdict.DUPLICATE, seen


def remember(store: MutableMapping[str, Any], key: str, partition: int, offset: int, now_ms: int) -> None:
    """Record the first occurrence, before its state writes are applied."""
    store[key] = {"p": partition, "o": offset, "t": now_ms}
