"""What the processor's state changelog costs: bytes per remembered id and restore time per million entries.

    python bench/restore.py [--ids 1000000] [--batch 5000] [--home DIR] [--json FILE] [--keep-broker]

On a local broker under --home (started if needed, or METERSTREAM_KAFKA_BOOTSTRAP), with a fresh changelog of
one partition: N event ids are committed in batches as the processor commits them (`PartitionStore.prepare`:
one dedup entry per id, packed per commit and day, plus a running total per customer of 100 and the counters
and offset), produced with the processor's producer settings (`make_producer`, lz4, acks=all) and applied to a
local store. Then:

* `changelog_bytes_per_id`: the partition's segment files on the broker's disk (as written, before any
  compaction: dedup records are unique per commit and day, so compaction does not shrink them; superseded
  running totals and counters would go), divided by N (only with a local broker);
* `restore_s_per_million_entries`: the time `ChangelogReader.catch_up` takes to rebuild an empty store from
  the changelog (what an instance does when a partition arrives without a local store), per million state
  entries written (dedup entries + the other keys), and `restore_ids_per_s`;
* a check: the rebuilt store holds every id, the counters and the offset of the source store.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson

from meterstream.deploy import kafka_local
from meterstream.deploy.ports import free_port_pair
from meterstream.ingest.producer import DeliveryTracker, make_producer
from meterstream.processor.changelog import (
    ChangelogReader,
    ChangelogWriter,
    changelog_topic,
    ensure_changelog,
)
from meterstream.processor.dedup import dedup_key
from meterstream.processor.store import PartitionStore
from meterstream.schemas.settings import Settings


def say(msg: str) -> None:
    print(f"[restore] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ids", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--home", type=Path, default=Path("/tmp/meterstream-bench"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--keep-broker", action="store_true")
    args = ap.parse_args(argv)

    home = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    port_file = home / "bench-kafka-port"
    if not port_file.exists():
        port_file.write_text(str(free_port_pair()))
    settings = Settings(home=home, kafka_port=int(port_file.read_text()))
    local = not settings.kafka_bootstrap
    kafka_local.start(settings)
    run = settings.model_copy(update={"topic_prefix": f"restore-{uuid.uuid4().hex[:8]}."})
    work = home / f"restore-{run.topic_prefix.rstrip('.')}"
    result: dict = {"ids": args.ids, "batch": args.batch}
    try:
        ensure_changelog(run, 1)
        topic = changelog_topic(run)
        source = PartitionStore(work / "source")
        producer = make_producer(run, **{"linger.ms": 5})
        writer = ChangelogWriter(producer, topic)
        tracker = DeliveryTracker()
        now_ms = int(time.time() * 1000)
        records = entries = 0
        t0 = time.perf_counter()
        for start in range(0, args.ids, args.batch):
            end = min(start + args.batch, args.ids)
            writes: dict = {dedup_key("acme", f"evt-{i:012d}-{uuid.UUID(int=i * 7919).hex[:12]}"):
                            {"p": 0, "o": i, "t": now_ms} for i in range(start, end)}  # fmt: skip
            for c in range(100):  # a running total per customer (the newest only survives compaction)
                writes[f"c|acme|cust-{c}|api_calls|2026-11"] = [str(end + c), end - 1]
            prepared = source.prepare(writes, end, Counter({"rated": end - start}))
            records += writer.produce(0, prepared.records, tracker)
            entries += len(writes) + 2  # + the counters and the offset
            source.apply(prepared)
            producer.poll(0)
        if producer.flush(120) or tracker.errors:
            raise RuntimeError(f"changelog not delivered: {tracker.errors[:1]}")
        result["write_seconds"] = round(time.perf_counter() - t0, 2)
        result["changelog_records"] = records
        result["state_entries"] = entries
        say(f"{args.ids:,} ids in {records:,} changelog records ({entries:,} state entries), "
            f"{result['write_seconds']} s")  # fmt: skip
        if local:
            data = home / "kafka" / "data" / f"{topic}-0"
            size = sum(f.stat().st_size for f in data.glob("*.log"))
            result["changelog_bytes"] = size
            result["changelog_bytes_per_id"] = round(size / args.ids, 1)

        reader = ChangelogReader(run)
        target = PartitionStore(work / "target")
        t0 = time.perf_counter()
        done = reader.catch_up(0, target)
        seconds = time.perf_counter() - t0
        reader.close()
        assert done is not None and done.entries == entries, (done, entries)
        assert target.next_offset() == args.ids and target.counts == source.counts
        last = dedup_key("acme", f"evt-{args.ids - 1:012d}-{uuid.UUID(int=(args.ids - 1) * 7919).hex[:12]}")
        assert target.get(last) == {"p": 0, "o": args.ids - 1, "t": now_ms}
        result["restore_seconds"] = round(seconds, 2)
        result["restore_s_per_million_entries"] = round(seconds / entries * 1e6, 2)
        result["restore_ids_per_s"] = round(args.ids / seconds)
        target.close()
        source.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if local and not args.keep_broker:
            kafka_local.stop(settings)
    print(orjson.dumps(result).decode())
    if args.json:
        args.json.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
