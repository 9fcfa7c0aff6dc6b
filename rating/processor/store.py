"""Processor state on local RocksDB, one store per input partition, written once per batch.

A batch's state writes and the input offset they reach are one atomic WriteBatch, so after a crash the
store is exactly as it was after some whole batch, and processing resumes right after that batch.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import orjson
from rocksdict import Options, Rdict, WriteBatch

_OFFSET_KEY = b"\x00offset"


class PartitionStore:
    """The durable state of one input partition."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), options=Options(raw_mode=True))

    def get(self, key: str) -> Any:
        raw = self.db.get(key.encode())
        return None if raw is None else orjson.loads(raw)

    def next_offset(self) -> int | None:
        """The first input offset not yet reflected in this store (None: nothing processed yet)."""
        raw = self.db.get(_OFFSET_KEY)
        return None if raw is None else int(raw)

    def commit(self, writes: dict[str, Any], next_offset: int) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in writes.items():
            batch.put(key.encode(), orjson.dumps(value))
        batch.put(_OFFSET_KEY, str(next_offset).encode())
        self.db.write(batch)

    def close(self) -> None:
        self.db.close()


class BatchState(MutableMapping[str, Any]):
    """A write buffer over a store: what `step.process` sees while a batch is being processed."""

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self.pending: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.pending:
            return self.pending[key]
        value = self.store.get(key)
        return default if value is None else value

    def __setitem__(self, key: str, value: Any) -> None:
        self.pending[key] = value

    def __delitem__(self, key: str) -> None:
        raise NotImplementedError("state entries are never deleted inside a batch")

    def __iter__(self) -> Iterator[str]:
        return iter(self.pending)

    def __len__(self) -> int:
        return len(self.pending)
