"""The store's in-memory held index (`PartitionStore.held`) against RocksDB: a put and a delete of one key in a batch,
chains of uncommitted batches, purge, reopen, wipe, and a restore through the deferred path with tombstones."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from meterstream.processor.store import BatchState, PartitionStore

H = "h|held|s|t\x1fc\x1f"


def on_disk(store: PartitionStore) -> dict[str, object]:
    import orjson

    return {k.decode(): orjson.loads(v) for k, v in store.db.items(from_key=b"h|held|") if k.startswith(b"h|held|")}


def test_put_then_delete_in_one_batch_and_chains(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p")
    try:
        store.commit({H + "a": [[1, "t", "c"], 0], H + "b": [[2, "t", "c"], 0]}, 1, Counter())
        b1 = BatchState(store)
        b1[H + "a"] = None  # released by batch 1 (uncommitted)
        b1[H + "c"] = [[3, "t", "c"], 1]
        b1[H + "c"] = None  # held and released within batch 1
        b2 = BatchState(store, b1)
        assert b2.get(H + "a") is None and H + "a" not in b2 and b2.get(H + "b") == [[2, "t", "c"], 0]
        b2[H + "a"] = [[9, "t", "c"], 2]  # held again by batch 2
        b3 = BatchState(store, b2)  # two uncommitted before it: an Uncommitted view
        assert b3.get(H + "a") == [[9, "t", "c"], 2] and b3.get(H + "c") is None
        b1.commit(2, Counter())
        assert store.held == on_disk(store) == {H + "b": [[2, "t", "c"], 0]}
        assert b2.get(H + "a") == [[9, "t", "c"], 2] and BatchState(store).get(H + "a") is None  # recent not stale
        b2.commit(3, Counter())
        assert store.held == on_disk(store) and set(store.held) == {H + "a", H + "b"}
        store.purge_before(10**6)  # purge: recent emptied, held untouched
        assert store.held == on_disk(store)
        store.close()
        store = PartitionStore(tmp_path / "p")  # revoked and re-assigned: a new object on the same path
        assert store.held == on_disk(store) and set(store.held) == {H + "a", H + "b"}
    finally:
        store.close()


def test_restore_deferred_path_with_tombstones(tmp_path: Path) -> None:
    src = PartitionStore(tmp_path / "src")
    dst = PartitionStore(tmp_path / "dst")
    try:
        logged = []
        for i, writes in enumerate(
            [
                {"d|t\x1fe1": {"p": 0, "o": 0, "t": 0}, H + "a": [[1, "t", "c"], 0]},
                {H + "b": [[2, "t", "c"], 1]},
                {H + "a": None, "d|t\x1fe2": {"p": 0, "o": 2, "t": 0}},
            ]
        ):
            p = src.prepare(writes, i + 1, Counter())
            src.apply(p)
            logged += p.records
        plan = src.plan_purge(1)  # the day-0 index entries' tombstones: the deferred path on restore
        src.apply(plan)
        logged += plan.records
        p = src.prepare({H + "b": None, H + "c": [[3, "t", "c"], 3]}, 4, Counter())
        src.apply(p)
        logged += p.records
        assert any(v is None and k.startswith(b"t|") for k, v in logged)
        dst.restore(logged, len(logged))
        assert dst.held == on_disk(dst) == src.held == on_disk(src) == {H + "c": [[3, "t", "c"], 3]}
        dst.wipe()
        assert dst.held == on_disk(dst) == {}
    finally:
        src.close()
        dst.close()
