"""bench/state_footprint.py: dedup ids and bytes per id of the processors' stores, as bench/e2e.py reports them."""

from __future__ import annotations

from pathlib import Path

import orjson
from by_path import load
from rocksdict import Options, Rdict

footprint = load("bench/state_footprint.py")


def _store(path: Path, entries: dict[bytes, bytes]) -> None:
    db = Rdict(str(path), options=Options(raw_mode=True))
    for k, v in entries.items():
        db[k] = v
    db.close()


def _files(base: Path) -> dict[str, int]:
    return {str(f.relative_to(base)): f.stat().st_size for f in base.rglob("*") if f.is_file()}


def test_counts_dedup_entries_only_and_divides_by_them(tmp_path: Path) -> None:
    entry = orjson.dumps({"p": 0, "o": 1, "t": 1_790_000_000_000})
    _store(tmp_path / "p0", {
        b"d|cloudco\x1fe1": entry, b"d|cloudco\x1fe2": entry, b"d|telco\x1fe3": entry,
        b"t|00020717|d|cloudco\x1fe1": b"",  # the day index: not an id
        b"c|cloudco\x1forg-1\x1fapi_calls\x1f2026-11": b'["3",2]',  # a running total: not an id
        b"\x00offset": b"3",
    })  # fmt: skip
    _store(tmp_path / "p1", {b"d|cloudco\x1fe9": entry, b"d|cloudco\x1fe10": entry})
    (tmp_path / "other").mkdir()  # not a partition store
    before = _files(tmp_path)
    got = footprint.dedup_footprint(tmp_path)
    assert (got["dedup_stores"], got["dedup_ids"]) == (2, 5)
    assert got["state_dir_bytes"] == sum(before.values()) > 0
    assert got["state_dir_bytes_per_id"] == round(got["state_dir_bytes"] / 5, 1)
    assert got["estimate_live_data_bytes"] > 0  # closing flushed the entries into SST files
    assert got["estimate_live_bytes_per_id"] == round(got["estimate_live_data_bytes"] / 5, 1)
    assert _files(tmp_path) == before  # opened read-only: measuring changes nothing


def test_no_store_no_ids(tmp_path: Path) -> None:
    got = footprint.dedup_footprint(tmp_path)
    assert got["dedup_ids"] == 0 and got["state_dir_bytes_per_id"] is None
