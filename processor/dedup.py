"""Deduplication by (tenant, id), tolerant of replays: a crash must never turn an event into a 'duplicate'.

The store remembers, per identity, the source position (partition, offset) where the event was first
seen and the record it produced. The same identity at another position is a duplicate (dropped,
counted); at the *same* position it is a replay of a message processed before a crash, and the stored
record is emitted again, byte-identical, so the ClickHouse table (keyed by tenant + id) collapses it.
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


def remember(
    store: MutableMapping[str, Any],
    key: str,
    partition: int,
    offset: int,
    now_ms: int,
    record: dict[str, Any] | None,
    writes: list[Any] | None,
) -> None:
    """Record the first occurrence, before its state writes are applied.

    With `record` and `writes` kept (engines whose state and offsets are not committed together), a
    crash leaves either nothing of the event or this entry, and a replay can finish the writes and
    re-emit `record` unchanged. Engines that commit state and input offset atomically pass None for
    both: a replay cannot reach them, and the entry stays small (bytes per remembered id matter).
    """
    entry: dict[str, Any] = {"p": partition, "o": offset, "t": now_ms}
    if record is not None:
        entry["r"], entry["w"] = record, writes
    store[key] = entry
