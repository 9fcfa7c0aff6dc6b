"""Bytes per remembered event id in the processor's dedup state (RocksDB, as the native engine writes it).

Writes N ids through `PartitionStore.commit` in processor-sized batches (realistic tenant and UUID-like
ids, the compact entry the native engine keeps, plus its day index), compacts, and measures the store
on disk.  `python bench/dedup_state.py --ids 10000000 --json out.json`
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson

from meterstream.processor.dedup import dedup_key
from meterstream.processor.store import PartitionStore


def measure(ids: int, batch: int = 5000) -> dict:
    root = Path(tempfile.mkdtemp(prefix="dedup-bench-"))
    try:
        store = PartitionStore(root / "p0")
        now = int(time.time() * 1000)
        write_s = 0.0
        for start in range(0, ids, batch):
            writes = {
                dedup_key(f"tenant-{i % 7}", str(uuid.UUID(int=i * 2654435761 % (1 << 128)))): {
                    "p": 0, "o": i, "t": now + i // 100
                }
                for i in range(start, min(start + batch, ids))
            }  # fmt: skip
            t0 = time.perf_counter()
            store.commit(writes, start + batch, Counter(rated=len(writes)))
            write_s += time.perf_counter() - t0
        store.db.compact_range(None, None)
        store.close()
        size = sum(f.stat().st_size for f in (root / "p0").rglob("*") if f.is_file())
        return {
            "ids": ids,
            "bytes_on_disk": size,
            "bytes_per_id": round(size / ids, 1),
            "projected_bytes_10m": round(size / ids * 10_000_000),
            "commit_ids_per_s": round(ids / write_s),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ids", type=int, default=10_000_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = measure(args.ids)
    print(f"{result['ids']:,} ids: {result['bytes_on_disk'] / 1e6:,.1f} MB on disk, {result['bytes_per_id']} bytes/id, "
          f"{result['commit_ids_per_s']:,} ids/s committed")  # fmt: skip
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
