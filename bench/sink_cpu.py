"""The sink's CPU per row into embedded ClickHouse at the sink's own cadence, background merges included.

    python bench/sink_cpu.py [--events 100000] [--rate 25000] [--batch-seconds 0.3 | --backlog] [--json FILE]

The rated records are the processor's (`bench/sink_format.rated_rows`: the demo workload through the
columnar processor, packed into Arrow `rated-usage` messages as the processor sends them); they are
generated once and cached in /tmp. Then, in this process, on a fresh embedded store (`create_schema`):
the sink's batch (`RecordBatch.add` per message) and insert (`sink.insert_records`) every
`--batch-seconds`, each insert holding the rows that arrive in that time at `--rate` rows/s (what the
sink does while the processor drains a backlog: a flush when the batch is `sink_batch_seconds` old),
sleeping between inserts so that ClickHouse's background merges run as they do in the sink process.
`--backlog`: the blocks the sink inserts while a backlog waits (`sink.batch_limits` with a backlog:
`sink_backlog_batch_seconds`, at most `sink_backlog_batch_rows`) instead of `--batch-seconds`.
`--to-one-part`: then `OPTIMIZE TABLE ... FINAL` (every thread's CPU counted), so that set-ups which leave
different numbers of parts unmerged are compared at the same end (`cpu_us_per_row_to_one_part`): a store that
merges less while the stream runs has the rest still to do.
After the last insert it waits until no merge runs and the part count has not moved for `--settle`
seconds, so merges the inserts caused are counted even when they happen after the stream drained (the
python thread, which only polls then, is counted up to the last insert).

CPU is this process's (all threads, /proc/self/task), per thread group, from the first insert to the
settled store: what the sink process spends per row without Kafka (`rdk:*` threads and the commit).
The rows are checked: `count()` FINAL equals the rows sent.
"""

from __future__ import annotations

import argparse
import os
import re
import struct
import tempfile
import time
from pathlib import Path

import orjson

from meterstream.aggregation.client import connect
from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_FIELDS, RecordBatch
from meterstream.aggregation.sink import batch_limits, insert_records
from meterstream.schemas.rated import read_arrow
from meterstream.schemas.settings import Settings

_NUMBER = re.compile(r"[-#]?\d+")


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, per thread name without its numbers (Linux /proc)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        group = _NUMBER.sub("", name) or name
        out[group] = out.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        out["(system time)"] = out.get("(system time)", 0.0) + int(fields[12]) / tick
    return out


EVENTS = (
    "Merge",
    "MergedRows",
    "MergeTotalMilliseconds",
    "InsertedRows",
    "MergeTreeDataWriterStatisticsCalculationMicroseconds",
)


def engine_events(client) -> dict[str, int]:
    """ClickHouse's own counters (system.events, cumulative for the process): merges and rows merged."""
    names = ", ".join(f"'{e}'" for e in EVENTS)
    rows = client.query(f"SELECT event, value FROM system.events WHERE event IN ({names})").result_rows
    return {e: int(v) for e, v in rows}


def messages(events: int) -> list[bytes]:
    """The processor's Arrow `rated-usage` message values for `events` workload events (cached)."""
    cache = Path(tempfile.gettempdir()) / f"meterstream-sink-cpu-{events}.bin"  # each value after its length
    if cache.exists():
        data, values, at = cache.read_bytes(), [], 0
        while at < len(data):
            (n,) = struct.unpack_from("<I", data, at)
            values.append(data[at + 4 : at + 4 + n])
            at += 4 + n
        return values
    from sink_format import produce_arrow, rated_rows

    with tempfile.TemporaryDirectory() as tmp:
        values = produce_arrow(rated_rows(events, Path(tmp) / "state"))
    cache.write_bytes(b"".join(struct.pack("<I", len(v)) + v for v in values))
    return values


def settle(client, db: str, quiet: float, limit: float = 120.0) -> int:
    """Wait until no merge runs and the active part count stayed the same for `quiet` seconds."""
    last, since, deadline = -1, time.monotonic(), time.monotonic() + limit
    while time.monotonic() < deadline:
        merging = int(client.command(f"SELECT count() FROM system.merges WHERE database = '{db}'"))
        parts = int(client.command(f"SELECT count() FROM system.parts WHERE database = '{db}' AND active"))
        if merging or parts != last:
            last, since = parts, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return parts
        time.sleep(1.0)
    return last


def run(
    values: list[bytes], rate: float, batch_seconds: float, quiet: float, alter: list[str], rows: int, one: bool
) -> dict:
    per_insert = max(min(int(rate * batch_seconds), rows), 1)
    with tempfile.TemporaryDirectory() as tmp:
        client = connect(dsn=f"chdb://{Path(tmp) / 'chdb'}")
        db = "bench"
        create_schema(client, db)
        for setting in alter:  # a table setting to compare, e.g. merge_selector_base=8
            client.command(f"ALTER TABLE {db}.rated_usage MODIFY SETTING {setting}")
        expected_rows = sum(read_arrow(v).num_rows for v in values)
        time.sleep(1.0)
        events0 = engine_events(client)
        before, wall0 = thread_cpu(), time.monotonic()
        batch, inserts, next_at = RecordBatch("rated_usage", RATED_FIELDS), 0, time.monotonic()
        for i, value in enumerate(values):
            batch.add(value)
            if len(batch) >= per_insert or i == len(values) - 1:
                next_at += len(batch) / rate  # the time those rows took to arrive
                time.sleep(max(next_at - time.monotonic(), 0.0))
                insert_records(client, db, batch, f"bench-{inserts}")
                inserts += 1
                batch = RecordBatch("rated_usage", RATED_FIELDS)
        inserted = thread_cpu()
        parts = settle(client, db, quiet)
        after, wall = thread_cpu(), time.monotonic() - wall0
        rows = int(client.command(f"SELECT count() FROM {db}.rated_usage FINAL"))
        assert rows == expected_rows, f"{rows} rows in the table, {expected_rows} sent"
        # the python thread only polls system.merges after the last insert: its CPU counts until then
        after["python"] = inserted.get("python", 0.0)
        groups = {k: round(after.get(k, 0.0) - before.get(k, 0.0), 3) for k in after}
        events = {k: v - events0.get(k, 0) for k, v in engine_events(client).items()}
        total = sum(v for k, v in groups.items() if k != "(system time)")
        at_insert = sum(v - before.get(k, 0.0) for k, v in inserted.items() if k != "(system time)")
        to_one = None
        if one:  # the merges still to do, all at once
            c0 = thread_cpu()
            client.command(f"OPTIMIZE TABLE {db}.rated_usage FINAL")
            c1 = thread_cpu()
            to_one = sum(v - c0.get(k, 0.0) for k, v in c1.items() if k != "(system time)")
        t0 = time.process_time()
        client.query(f"SELECT count(), sum(streamed_amount) FROM {db}.usage_by_period")
        final_query_s = time.process_time() - t0
        client.close()
    return {
        "rows": rows,
        "inserts": inserts,
        "rows_per_insert": per_insert,
        "active_parts_settled": parts,
        "merges": events.get("Merge", 0),
        "merged_rows_per_row": round(events.get("MergedRows", 0) / rows, 2),  # write amplification by merges
        "engine_events": events,
        "wall_s": round(wall, 2),
        "cpu_us_per_row": round(total / rows * 1e6, 2),
        "cpu_us_per_row_until_last_insert": round(at_insert / rows * 1e6, 2),
        **({"cpu_us_per_row_to_one_part": round((total + to_one) / rows * 1e6, 2)} if to_one is not None else {}),
        "threads_cpu_s": dict(sorted(((k, v) for k, v in groups.items() if v > 0), key=lambda kv: -kv[1])),
        "usage_by_period_query_cpu_s": round(final_query_s, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=25_000.0, help="rows per second reaching the sink")
    ap.add_argument("--batch-seconds", type=float, default=None, help="default: sink_batch_seconds")
    ap.add_argument("--backlog", action="store_true", help="the sink's blocks while a backlog waits")
    ap.add_argument("--to-one-part", action="store_true", help="then merge what is left into one part, counted")
    ap.add_argument("--settle", type=float, default=8.0, help="seconds without a merge before stopping")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--table-setting", action="append", default=[], help="k=v, applied to rated_usage (repeatable)")
    args = ap.parse_args()
    values = messages(args.events)
    settings = Settings()
    rows, seconds = batch_limits(settings, settings.sink_backlog_rows if args.backlog else 0)
    if args.batch_seconds is not None and not args.backlog:
        seconds = args.batch_seconds
    result = {
        "events": args.events,
        "rate": args.rate,
        "backlog": args.backlog,
        "batch_seconds": seconds,
        "batch_rows_max": rows,
        "to_one_part": args.to_one_part,
        "table_settings": args.table_setting,
        "rounds": [],
    }
    for _ in range(args.rounds):
        figures = run(values, args.rate, seconds, args.settle, args.table_setting, rows, args.to_one_part)
        figures["load_avg"] = os.getloadavg()[0]
        result["rounds"].append(figures)
        print(orjson.dumps(figures).decode())
    if args.json:
        args.json.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
