"""Deduplication by (tenant, id), tolerant of replays: a crash must never turn an event into a 'duplicate'.

The store remembers, per identity, the source position (partition, offset) where the event was first
seen and when: the entry is `{"p": partition, "o": offset, "t": epoch ms}` and nothing else (bytes per
remembered id matter). The same identity at another position is a duplicate (dropped, counted); at
the *same* position it is a replay of a message processed before a crash. The native engine commits
the store with the input offset, so its replays never reach an entry; an engine without that
atomicity keeps what it must re-emit in its own data (processor/faust_engine.py).
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


def remember(store: MutableMapping[str, Any], key: str, partition: int, offset: int, now_ms: int) -> None:
    """Record the first occurrence, before its state writes are applied."""
    store[key] = {"p": partition, "o": offset, "t": now_ms}
