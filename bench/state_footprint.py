"""What the processors' dedup state costs per remembered id, measured on their RocksDB stores after a run.

Used by bench/e2e.py once the workers stopped; `python bench/state_footprint.py DIR` measures the
partition stores (p0, p1, ...) under DIR, e.g. `<home>/processor/<app id>-native`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
from rocksdict import AccessType, Options, Rdict

from meterstream.processor.dedup import DEDUP_PREFIX


def dedup_footprint(base: Path) -> dict:
    """The processors' partition stores under `base` (p0, p1, ...), read once no worker runs.

    `dedup_ids` counts the dedup entries; `state_dir_bytes` is every file of the stores as left on disk
    (SST files, WAL, logs, the dedup day index and the running totals: all a remembered id costs),
    taken before opening them; `estimate_live_data_bytes` is RocksDB's `rocksdb.estimate-live-data-size`
    (live data in the SST files) summed over the stores, opened read-only. Per id: divided by `dedup_ids`.
    """
    stores = sorted(p for p in base.glob("p*") if p.is_dir())
    on_disk = sum(f.stat().st_size for p in stores for f in p.rglob("*") if f.is_file())
    prefix = DEDUP_PREFIX.encode()  # keys are stored as UTF-8
    ids = live = 0
    for path in stores:
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            live += db.property_int_value("rocksdb.estimate-live-data-size") or 0
            for key in db.keys(from_key=prefix):
                if not key.startswith(prefix):
                    break
                ids += 1
        finally:
            db.close()

    def per_id(n: int) -> float | None:
        return round(n / ids, 1) if ids else None

    return {
        "dedup_stores": len(stores),
        "dedup_ids": ids,
        "state_dir_bytes": on_disk,
        "state_dir_bytes_per_id": per_id(on_disk),
        "estimate_live_data_bytes": live,
        "estimate_live_bytes_per_id": per_id(live),
    }


if __name__ == "__main__":
    print(orjson.dumps(dedup_footprint(Path(sys.argv[1])), option=orjson.OPT_INDENT_2).decode())
