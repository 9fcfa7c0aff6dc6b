"""Processor state on local RocksDB, one store per input partition, written once per batch.

A batch's state writes, its outcome counters and the input offset they reach are one atomic
WriteBatch, so after a crash the store is exactly as it was after some whole batch, and processing
resumes right after that batch with exact counters.

Dedup entries are bounded: each carries an index key `t|<day>|<key>` (sorted by the day it was
first seen), and `purge_before(day)` walks that index from its start, deleting what fell out of the
window, so a purge touches only expired ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import orjson
from rocksdict import BlockBasedOptions, Options, Rdict, WriteBatch

from meterstream.processor.dedup import DEDUP_PREFIX

_MISSING = object()
_OFFSET_KEY = b"\x00offset"
_COUNTS_KEY = b"\x00counts"
_INDEX = b"t|"
DAY_MS = 86_400_000


def _options() -> Options:
    """Most lookups are misses (every new event id is looked up once): bloom filters on the table files
    and in the memtable answer a miss without searching (here 1.8 -> 0.4 µs in the memtable)."""
    options = Options(raw_mode=True)
    table = BlockBasedOptions()
    table.set_bloom_filter(10, False)
    options.set_block_based_table_factory(table)
    options.set_memtable_prefix_bloom_ratio(0.1)
    options.set_memtable_whole_key_filtering(True)
    return options


class PartitionStore:
    """The durable state of one input partition."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), options=_options())
        raw = self.db.get(_COUNTS_KEY)
        self.counts: Counter[str] = Counter(orjson.loads(raw) if raw else {})

    def get(self, key: str) -> Any:
        raw = self.db.get(key.encode())
        return None if raw is None else orjson.loads(raw)

    def get_many_raw(self, keys: list[bytes]) -> list[bytes | None]:
        """Stored values (encoded) of many keys in one multi-get, in order; None where absent."""
        return self.db.get(keys) if keys else []

    def next_offset(self) -> int | None:
        """The first input offset not yet reflected in this store (None: nothing processed yet)."""
        raw = self.db.get(_OFFSET_KEY)
        return None if raw is None else int(raw)

    def commit(self, writes: dict[str, Any], next_offset: int, outcomes: Counter[str]) -> None:
        """Apply a batch: state, dedup time index, outcome counters and next offset, atomically."""
        batch = WriteBatch(raw_mode=True)
        for key, value in writes.items():
            bkey = key.encode()
            batch.put(bkey, orjson.dumps(value))
            if key.startswith(DEDUP_PREFIX):
                batch.put(b"%s%08d|%s" % (_INDEX, value["t"] // DAY_MS, bkey), b"")
        counts = self.counts + outcomes
        batch.put(_COUNTS_KEY, orjson.dumps(counts))
        batch.put(_OFFSET_KEY, str(next_offset).encode())
        self.db.write(batch)
        self.counts = counts

    def purge_before(self, day: int) -> int:
        """Forget dedup entries first seen before `day` (days since the epoch); returns how many."""
        end = b"%s%08d|" % (_INDEX, day)
        batch = WriteBatch(raw_mode=True)
        n = 0
        for key in self.db.keys(from_key=_INDEX):
            if not key.startswith(_INDEX) or key >= end:
                break
            batch.delete(key)
            dkey = key[len(_INDEX) + 9 :]
            raw = self.db.get(dkey)
            if raw is not None and orjson.loads(raw)["t"] < day * DAY_MS:  # not re-seen since
                batch.delete(dkey)
                n += 1
        if n:
            self.db.write(batch)
        return n

    def close(self) -> None:
        self.db.close()


class BatchState(MutableMapping[str, Any]):
    """A write buffer over a store: what `step.process` sees while a batch is being processed.

    `after` is the previous batch's buffer while that batch is still uncommitted (its outputs on their
    way to Kafka): its writes are seen as if committed. Batches commit in order, and the processor
    starts a batch only once the one before the previous is committed, so one level is enough;
    `committed()` cuts the link so old buffers are freed.
    """

    def __init__(self, store: PartitionStore, after: BatchState | None = None) -> None:
        self.store = store
        self.pending: dict[str, Any] = {}
        self.after = after
        self._db_get = store.db.get  # the hot path: one lookup in pending, else one in RocksDB

    def __getitem__(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self.pending.get(key, _MISSING)
        if value is not _MISSING:
            return value
        if self.after is not None:
            value = self.after.pending.get(key, _MISSING)
            if value is not _MISSING:
                return value
        raw = self._db_get(key.encode())
        return default if raw is None else orjson.loads(raw)

    def __setitem__(self, key: str, value: Any) -> None:
        self.pending[key] = value

    def commit(self, next_offset: int, outcomes: Counter[str]) -> None:
        """Write this buffer to the store (the previous batch's must be committed already)."""
        self.store.commit(self.pending, next_offset, outcomes)
        self.after = None

    def __delitem__(self, key: str) -> None:
        raise NotImplementedError("state entries are never deleted inside a batch")

    def __iter__(self) -> Iterator[str]:
        return iter(self.pending)

    def __len__(self) -> int:
        return len(self.pending)
