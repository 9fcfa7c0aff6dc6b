"""Storage per rated event in ClickHouse: load N rated rows into the embedded store with the real DDL and read
what the parts take on disk.

    python bench/storage.py [--rows 1000000] [--json FILE]

The rows are the demo workload's events (`ingest.workload`: telecom voice/SMS/data with destinations, cloud
API calls and storage with regions; skewed customers, times spread over a month) as the processor would write
them to `rated_usage` (amount = quantity x a plan's unit price, cumulative = the customer's running total per
meter and period, source partition and offset). Two id shapes, each in its own table: the workload's
sequential ids (`demo-000000123`) and random UUIDs (what most producers send), since `event_id` is the one
column that does not compress. After `OPTIMIZE TABLE ... FINAL` (one part per month, as after merges) it reads
`system.parts` (bytes_on_disk, data_compressed_bytes, data_uncompressed_bytes, the part's default codec) and
`system.parts_columns` (per column) and prints bytes per row and per billion rows. docs/capacity.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
import uuid
import zlib
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import orjson

from meterstream.aggregation.client import connect
from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.ingest.workload import WorkloadSpec, generate

# unit prices per meter (the demo catalog's order of magnitude), for realistic amount digits
PRICE = {
    "voice_seconds": (Decimal("0.0015"), "EUR", "telecom-standard"),
    "sms": (Decimal("0.09"), "EUR", "telecom-standard"),
    "data_bytes": (Decimal("0.00000001"), "EUR", "telecom-standard"),
    "api_calls": (Decimal("0.00002"), "USD", "cloud-standard"),
    "storage_gb_hours": (Decimal("0.000137"), "USD", "cloud-standard"),
}
Q12 = Decimal("0.000000000001")
Q18 = Decimal("0.000000000000000001")


def rows(n: int, random_ids: bool, seed: int = 7) -> list[list]:
    """`n` rated rows as columns (RATED_COLUMNS order)."""
    spec = WorkloadSpec(events=n, period="2026-10", duplicate_rate=0.0, malformed_rate=0.0, unratable_rate=0.0,
                        seed=seed)  # fmt: skip
    rng = random.Random(seed)
    cols: list[list] = [[] for _ in RATED_COLUMNS]
    running: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    offsets = [0, 0, 0, 0]
    for _key, value in generate(spec):
        e = orjson.loads(value)
        price, currency, plan = PRICE[e["meter"]]
        q = Decimal(e["quantity"]).quantize(Q12)
        k = (e["tenant"], e["customer"], e["meter"])
        running[k] += q
        part = zlib.crc32(f"{k[0]}/{k[1]}".encode()) % 4  # the key's partition, stably
        offsets[part] += 1
        when = datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
        row = [
            e["tenant"], uuid.UUID(int=rng.getrandbits(128), version=4).hex if random_ids else e["id"],
            e["customer"], e.get("subject") or "", e["meter"], when, "2026-10", q, (q * price).quantize(Q18),
            running[k], currency, plan, e["meter"], e.get("dimensions") or {}, e.get("source") or "", part,
            offsets[part],
        ]  # fmt: skip
        for c, v in zip(cols, row, strict=True):
            c.append(v)
    return cols


def measure(client, db: str, table: str, cols: list[list]) -> dict:
    client.command(f"CREATE TABLE {db}.{table} AS {db}.rated_usage")
    t0 = time.perf_counter()
    for start in range(0, len(cols[0]), 200_000):
        client.insert(f"{db}.{table}", [c[start:start + 200_000] for c in cols], column_names=list(RATED_COLUMNS),
                      column_oriented=True)  # fmt: skip
    insert_s = time.perf_counter() - t0
    client.command(f"OPTIMIZE TABLE {db}.{table} FINAL")
    part = client.query(
        "SELECT count(), sum(rows), sum(bytes_on_disk), sum(data_compressed_bytes), sum(data_uncompressed_bytes),"
        " any(default_compression_codec) FROM system.parts WHERE database = {d:String} AND table = {t:String}"
        " AND active", parameters={"d": db, "t": table}).result_rows[0]  # fmt: skip
    parts, n, on_disk, compressed, uncompressed, codec = part
    per_col = client.query(
        "SELECT column, sum(column_data_compressed_bytes), sum(column_data_uncompressed_bytes) FROM"
        " system.parts_columns WHERE database = {d:String} AND table = {t:String} AND active GROUP BY column"
        " ORDER BY 2 DESC", parameters={"d": db, "t": table}).result_rows  # fmt: skip
    return {
        "rows": int(n),
        "parts": int(parts),
        "codec": codec,
        "bytes_on_disk": int(on_disk),
        "compressed_bytes": int(compressed),
        "uncompressed_bytes": int(uncompressed),
        "bytes_on_disk_per_row": round(on_disk / n, 2),
        "compressed_per_row": round(compressed / n, 2),
        "uncompressed_per_row": round(uncompressed / n, 2),
        "gb_on_disk_per_billion_rows": round(on_disk / n, 2),  # bytes per row x 1e9 / 1e9
        "insert_seconds": round(insert_s, 2),
        "columns": {
            c: {"compressed_per_row": round(cb / n, 3), "uncompressed_per_row": round(ub / n, 3)}
            for c, cb, ub in per_col
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    out: dict = {"rows": args.rows, "machine": platform.machine(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                     time.gmtime())}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        client = connect(dsn=f"chdb://{tmp}/ch")
        out["clickhouse_version"] = client.command("SELECT version()")
        db = "storage_bench"
        client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
        create_schema(client, db)
        for name, random_ids in (("sequential_ids", False), ("uuid_ids", True)):
            t0 = time.perf_counter()
            cols = rows(args.rows, random_ids)
            gen_s = time.perf_counter() - t0
            out[name] = measure(client, db, f"rated_{name}", cols)
            out[name]["generate_seconds"] = round(gen_s, 1)
            del cols
            r = out[name]
            print(f"{name}: {r['rows']:,} rows, {r['parts']} part(s), codec {r['codec']}: "
                  f"{r['bytes_on_disk_per_row']} B/row on disk ({r['compressed_per_row']} compressed, "
                  f"{r['uncompressed_per_row']} uncompressed) = {r['gb_on_disk_per_billion_rows']} GB per billion rows",
                  flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
