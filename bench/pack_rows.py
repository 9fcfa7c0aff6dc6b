"""CPU of `schemas.rated_arrow.pack_arrow` (rated rows -> Arrow IPC messages, the columnar processor's form until the
JSON rows form, schemas.rated.pack_rows, replaced it), per event, against
the plain way of building the same messages (each column converted on its own by `pa.array`, the time texts
matched by the regular expression, the stream written by Arrow's stream writer), in one run on the same rows.

    python bench/pack_rows.py [--events 100000] [--repeat 5] [--json FILE]

Two figures per way, best of `--repeat` (the two ways alternate, so both see the same machine load):
- **in the flow**: the demo workload through the columnar step (`processor.columnar.ColumnarStep`, 4 partitions
  round-robin, 5,000-event batches, fresh RocksDB stores per run, as bench/processor_step.py runs it), each
  partition's rows packed right after the batch, as the runner packs them; the time counted is the calling
  thread's CPU inside the packing only (`time.thread_time`: RocksDB's background threads are not in it). The rows'
  objects are cold there (the batch's work came between), which costs ~2.5x the hot figure;
- **hot**: the same rows (kept from the last run) packed again in a loop, process CPU.
Both ways' messages are compared (byte for byte) on every row set.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from meterstream.collector import BetweenBatches
from meterstream.ingest.workload import WorkloadSpec, generate
from meterstream.processor.columnar import ColumnarStep, Message
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.rating.catalog import load_catalog
from meterstream.schemas import rated, rated_arrow
from meterstream.schemas.event import TimeWindow
from meterstream.schemas.settings import Settings

PARTITIONS, BATCH, WINDOW_MS = 4, 5000, 35 * 86_400_000


def plain_pack_rows(rows: list[tuple], max_bytes: int = rated.RATED_MESSAGE_MAX_BYTES) -> list[bytes]:
    """The plain way: column by column, the expression for the times, the stream writer, cut by written size."""
    schema = rated_arrow.arrow_schema()
    try:
        arrays = []
        for i, (field, values) in enumerate(zip(schema, zip(*rows, strict=True), strict=True)):
            if i == rated._TIME:
                text = pa.array(values, pa.string())
                if not pc.all(pc.match_substring_regex(text, rated_arrow._CANONICAL_TIME)).as_py():
                    raise ValueError("time: not in the canonical form")
                arrays.append(text.cast(field.type))
            else:
                arrays.append(pa.array(values, field.type))
        batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    except (pa.ArrowException, ArithmeticError, TypeError, ValueError):
        return rated.pack([orjson.dumps(dict(zip(rated.RATED_FIELDS, r, strict=True))) for r in rows], max_bytes)
    return _written_split(batch, max_bytes)


def _written(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _written_split(batch: pa.RecordBatch, max_bytes: int) -> list[bytes]:
    value = _written(batch)
    n = batch.num_rows
    if len(value) <= max_bytes or n == 1:
        return [value]
    step = -(-n // max(2, -(-len(value) // max_bytes)))
    return [v for start in range(0, n, step) for v in _written_split(batch.slice(start, step), max_bytes)]


WAYS = {"pack_rows": rated_arrow.pack_arrow, "plain": plain_pack_rows}


def in_flow(step: ColumnarStep, msgs: list[Message], now_ms: int, pack) -> tuple[float, list[list[tuple]]]:
    """One pass of the columnar step over `msgs` on fresh stores: (thread CPU seconds inside `pack`, the row sets)."""
    root = Path(tempfile.mkdtemp(prefix="pack-rows-bench-"))
    try:
        stores = {p: PartitionStore(root / f"p{p}") for p in range(PARTITIONS)}
        latest: dict[int, BatchState] = {}
        spent, row_sets = 0.0, []
        collector = BetweenBatches()  # as the runner: no collection inside a batch, a young one between them
        collector.settle()
        for i in range(0, len(msgs), BATCH):
            batch = msgs[i : i + BATCH]
            states = {}
            for p in {m.partition for m in batch}:
                states[p] = latest[p] = BatchState(stores[p], latest.get(p))
            out = step.run(states, batch, now_ms)
            for rows in out.rated.values():
                if rows and not isinstance(rows[0], bytes):
                    t0 = time.thread_time()
                    pack(rows)
                    spent += time.thread_time() - t0
                    row_sets.append(rows)
            for p, state in states.items():
                state.commit(out.last[p] + 1, out.outcomes.get(p, Counter()))
            collector.tick()
        collector.restore()
        gc.unfreeze()
        for store in stores.values():
            store.close()
        return spent, row_sets
    finally:
        shutil.rmtree(root, ignore_errors=True)


def hot(row_sets: list[list[tuple]], pack) -> float:
    gc.collect()
    t0 = time.process_time()
    for rows in row_sets:
        pack(rows)
    return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--period", default="2026-10")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    settings = Settings()
    step = ColumnarStep(load_catalog(settings.catalog), "usage", WINDOW_MS, TimeWindow.of(
        settings.event_max_age_days, settings.event_max_future_minutes))  # fmt: skip
    records = list(generate(WorkloadSpec(events=args.events, period=args.period, run_id="bench")))
    msgs = [Message(i % PARTITIONS, i // PARTITIONS, k, v, None) for i, (k, v) in enumerate(records)]
    now_ms = int(time.time() * 1000)
    flow: dict[str, list[float]] = {name: [] for name in WAYS}
    loop: dict[str, list[float]] = {name: [] for name in WAYS}
    row_sets: list[list[tuple]] = []
    for _ in range(args.repeat):
        for name, pack in WAYS.items():
            spent, row_sets = in_flow(step, msgs, now_ms, pack)
            flow[name].append(spent / len(msgs) * 1e6)
    for rows in row_sets:
        if rated_arrow.pack_arrow(rows) != plain_pack_rows(rows):
            raise SystemExit("pack_rows and the plain way gave different messages")
    for _ in range(args.repeat):
        for name, pack in WAYS.items():
            loop[name].append(hot(row_sets, pack) / len(msgs) * 1e6)
    rows_total = sum(map(len, row_sets))
    result = {
        "events": len(msgs),
        "rated_rows": rows_total,
        "row_sets": len(row_sets),
        "in_flow_thread_cpu_us_per_event": {name: round(min(v), 3) for name, v in flow.items()},
        "hot_cpu_us_per_event": {name: round(min(v), 3) for name, v in loop.items()},
        "runs_in_flow": {name: [round(x, 3) for x in v] for name, v in flow.items()},
        "runs_hot": {name: [round(x, 3) for x in v] for name, v in loop.items()},
        "messages_equal": True,
    }
    f, h = result["in_flow_thread_cpu_us_per_event"], result["hot_cpu_us_per_event"]
    print(
        f"{len(msgs):,} events, {rows_total:,} rated rows in {len(row_sets)} row sets: pack_rows {f['pack_rows']:.2f} "
        f"µs CPU/event in the flow ({h['pack_rows']:.2f} hot), the plain way {f['plain']:.2f} ({h['plain']:.2f} hot); "
        "messages equal"
    )
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
