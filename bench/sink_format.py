"""Rated usage on the wire and into ClickHouse: JSON rows vs JSON Lines vs Arrow IPC, CPU per row, in one process.

    python bench/sink_format.py [--events 200000] [--rounds 2] [--json FILE]

The rows are realistic: the demo workload (`ingest.workload`, telecom + cloud tenants, duplicates and
malformed events included) run through the columnar processor (`processor.columnar.ColumnarStep`, the
demo catalog, 4 partitions by key, 5,000-event batches), which leaves ~1,250 rated rows per partition and batch.

- **producer side**, per processor batch and partition: JSON rows (the columnar processor's form,
  `schemas.rated.pack_rows`: one `orjson.dumps` of the rows, ≤ 256 KB messages), JSON Lines (a dict per record,
  `orjson.dumps`, `schemas.rated.pack`, as the legacy engine) and Arrow (`schemas.rated_arrow.pack_arrow`: the
  rows' columns into one record batch, IPC streams of ≤ 256 KB; the columnar processor's form before JSON rows);
- **sink side**, on a fresh embedded ClickHouse (chdb) table per variant: the sink's own batch
  (`aggregation.rows.RecordBatch.add` per message) and insert (`aggregation.sink.insert_records`) in
  blocks of 20,000 and 50,000 rows, JSONCompactEachRow (JSON rows), JSONEachRow and Arrow (`insert_arrow`); plus
  Arrow sent as one
  `ArrowStream` (`raw_insert` of one IPC stream of all the block's batches) for comparison.

CPU time is `time.process_time()` (all threads of this process, so ClickHouse's own work is in it), per
row. Figures move with the machine's load: compare the ratios of one run. Every variant's table is
read back and compared with the JSON one, row for row.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

import orjson

from meterstream.aggregation.client import connect
from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import INSERT_SETTINGS, RATED_FIELDS, RecordBatch
from meterstream.aggregation.sink import insert_records
from meterstream.ingest.workload import WorkloadSpec, generate
from meterstream.processor.columnar import ColumnarStep, Message
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.rating.catalog import load_catalog
from meterstream.schemas.event import partition_of_key
from meterstream.schemas.rated import pack, pack_rows
from meterstream.schemas.rated_arrow import pack_arrow
from meterstream.schemas.settings import Settings

PARTITIONS = 4
BATCH = 5000
SELECT = (
    "SELECT tenant, event_id, customer, subject, meter, time, period, quantity, amount, cumulative, currency, "
    "plan, line, dimensions, source, src_partition, src_offset FROM {db}.rated_usage ORDER BY src_partition, src_offset"
)


def rated_rows(events: int, work: Path) -> list[list[tuple]]:
    """The processor's rated rows, per batch and partition (what one `pack_arrow` call receives)."""
    settings = Settings()
    step = ColumnarStep(load_catalog(settings.catalog), "usage-events", 35 * 86_400_000, None)
    msgs: list[Message] = []
    offsets = [0] * PARTITIONS
    for key, value in generate(WorkloadSpec(events=events, run_id="sinkfmt")):
        p = partition_of_key(key, PARTITIONS)  # by key, as producers do: a duplicate meets its original's dedup state
        msgs.append(Message(p, offsets[p], key, value, None))
        offsets[p] += 1
    stores = {p: PartitionStore(work / f"p{p}") for p in range(PARTITIONS)}
    latest: dict[int, BatchState] = {}
    now = int(time.time() * 1000)
    chunks: list[list[tuple]] = []
    for i in range(0, len(msgs), BATCH):
        states = {p: BatchState(stores[p], latest.get(p)) for p in range(PARTITIONS)}
        latest.update(states)
        out = step.run(states, msgs[i : i + BATCH], now)
        chunks.extend(rows for rows in out.rated.values() if rows)
        for p, state in states.items():
            state.commit(out.last.get(p, 0) + 1, out.outcomes.get(p, {}))
    for store in stores.values():
        store.close()
    return chunks


def produce_json(chunks: list[list[tuple]]) -> list[bytes]:
    """Today's form: a dict per record (as the processor built it), orjson, JSON Lines messages."""
    out: list[bytes] = []
    dumps = orjson.dumps
    for rows in chunks:
        lines = [
            dumps(
                {
                    "tenant": r[0],
                    "id": r[1],
                    "customer": r[2],
                    "subject": r[3],
                    "meter": r[4],
                    "time": r[5],
                    "period": r[6],
                    "quantity": r[7],
                    "amount": r[8],
                    "cumulative": r[9],
                    "currency": r[10],
                    "plan": r[11],
                    "line": r[12],
                    "dimensions": r[13],
                    "source": r[14],
                    "src_partition": r[15],
                    "src_offset": r[16],
                }
            )
            for r in rows
        ]
        out.extend(pack(lines))
    return out


def produce_rows(chunks: list[list[tuple]]) -> list[bytes]:
    return [value for rows in chunks for value in pack_rows(rows)]


def produce_arrow(chunks: list[list[tuple]]) -> list[bytes]:
    return [value for rows in chunks for value in pack_arrow(rows)]


def cpu_s(fn, *args):
    gc.collect()
    start = time.process_time()
    result = fn(*args)
    return time.process_time() - start, result


def sink(client, db: str, values: list[bytes], block_rows: int, how: str) -> None:
    """The sink's batch and insert, one block per `block_rows` rows."""
    import pyarrow as pa

    batch = RecordBatch("rated_usage", RATED_FIELDS)
    n = 0

    def flush() -> None:
        nonlocal batch
        token = f"{how}-{n}"
        if how == "arrow-stream":  # comparison: one ArrowStream of the block's batches
            out = pa.BufferOutputStream()
            table = batch.arrow_table()
            with pa.ipc.new_stream(out, table.schema) as writer:
                writer.write_table(table)
            settings = {"insert_deduplication_token": token, "optimize_on_insert": 0, **INSERT_SETTINGS["rated_usage"]}
            names = table.column_names
            client.raw_insert(f"{db}.rated_usage", names, out.getvalue(), settings=settings, fmt="ArrowStream")
        else:
            insert_records(client, db, batch, token)
        batch = RecordBatch("rated_usage", RATED_FIELDS)

    for value in values:
        batch.add(value)
        n += 1
        if len(batch) >= block_rows:
            flush()
    if len(batch):
        flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        chunks = rated_rows(args.events, Path(tmp) / "state")
        rows = sum(len(c) for c in chunks)
        # warm-up: pyarrow's kernels load on first use
        produce_json(chunks[:1]), produce_arrow(chunks[:1]), produce_rows(chunks[:1])
        gc.collect()
        gc.freeze()
        result: dict = {"events": args.events, "rows": rows, "load_avg": os.getloadavg()[0], "rounds": []}
        client = connect(dsn=f"chdb://{Path(tmp) / 'chdb'}")
        for rnd in range(args.rounds):
            figures: dict = {}
            t_json, json_values = cpu_s(produce_json, chunks)
            t_arrow, arrow_values = cpu_s(produce_arrow, chunks)
            t_rows, rows_values = cpu_s(produce_rows, chunks)
            figures["producer_rows_us_per_row"] = t_rows / rows * 1e6
            figures["rows_bytes_per_row"] = sum(map(len, rows_values)) / rows
            figures["producer_json_us_per_row"] = t_json / rows * 1e6
            figures["producer_arrow_us_per_row"] = t_arrow / rows * 1e6
            figures["json_bytes_per_row"] = sum(map(len, json_values)) / rows
            figures["arrow_bytes_per_row"] = sum(map(len, arrow_values)) / rows
            figures["json_messages"], figures["arrow_messages"] = len(json_values), len(arrow_values)
            reference = None
            for block in (20_000, 50_000):
                for how, values in (
                    ("rows", rows_values),
                    ("json", json_values),
                    ("arrow", arrow_values),
                    ("arrow-stream", arrow_values),
                ):
                    db = f"bench_{rnd}_{block}_{how.replace('-', '_')}"
                    create_schema(client, db)
                    t, _ = cpu_s(sink, client, db, values, block, how)
                    figures[f"sink_{how.replace('-', '_')}_{block}_us_per_row"] = t / rows * 1e6
                    landed = client.query(SELECT.format(db=db)).result_rows
                    if reference is None:
                        reference = landed
                    assert len(landed) == rows and landed == reference, f"{how}: the table differs from JSON rows'"
                    client.command(f"DROP DATABASE {db}")
            for block in (20_000, 50_000):
                figures[f"sink_ratio_json_to_arrow_{block}"] = (
                    figures[f"sink_json_{block}_us_per_row"] / figures[f"sink_arrow_{block}_us_per_row"]
                )
            result["rounds"].append(figures)
            print(f"round {rnd + 1}: {rows:,} rows (load average {os.getloadavg()[0]:.1f})")
            print(
                f"  producer   JSON rows {figures['producer_rows_us_per_row']:.2f} µs/row "
                f"({figures['rows_bytes_per_row']:.0f} B/row)   "
                f"JSON {figures['producer_json_us_per_row']:.2f} µs/row "
                f"({figures['json_bytes_per_row']:.0f} B/row, {len(json_values)} messages)   "
                f"Arrow {figures['producer_arrow_us_per_row']:.2f} µs/row "
                f"({figures['arrow_bytes_per_row']:.0f} B/row, {len(arrow_values)} messages)"
            )
            for block in (20_000, 50_000):
                print(
                    f"  sink {block:>6,}-row blocks   "
                    f"JSONCompactEachRow {figures[f'sink_rows_{block}_us_per_row']:.2f}   "
                    f"JSONEachRow {figures[f'sink_json_{block}_us_per_row']:.2f}   "
                    f"insert_arrow {figures[f'sink_arrow_{block}_us_per_row']:.2f}   "
                    f"ArrowStream {figures[f'sink_arrow_stream_{block}_us_per_row']:.2f} µs/row   "
                    f"(JSON / Arrow {figures[f'sink_ratio_json_to_arrow_{block}']:.2f}×)"
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
