"""Latency of OpenMeter's entitlement value (`GET /api/v2/customers/{c}/entitlements/{feature}/value`,
docs/entitlements.md) against the meter query over the same usage, measured in the same run:

    python bench/entitlement_value.py [--rows 200000] [--requests 200] [--json FILE]

Builds the API app in this process (bench/authorize_setup.py's set-up: SQLite entity store in a temporary home, no
Kafka) on an embedded ClickHouse (chdb), creates a SUM meter, a customer, a feature and a metered entitlement with a
monthly usage period from the start of this month (an issued grant, a second grant with priority and expiration, a
third from last month that rolls over, so two periods are computed), and puts `--rows` rated rows of the customer
spread over this month until now into `rated_usage` (and as many of other customers). Then, one request at a time
through the ASGI app (httpx's ASGITransport: the FastAPI stack, authentication, no socket), times:

1. `meter_query`: the baseline, `GET /api/v1/meters/tokens/query?filterCustomerId=…&from=<month start>` (one
   ClickHouse aggregation over the customer's rows);
2. `value`: the entitlement's value (SQL reads of the customer, entitlement, grants, resets, feature and meter; one
   ClickHouse read of the usage per minute since last month's start; the burn-down in Python);
3. `access`: `GET /api/v1/customers/{c}/access` (the same, for the customer's one entitlement).

Reports p50/p99 per request and the ratios value / meter_query and access / meter_query (same machine, same run:
the figures move with the machine, the ratios much less).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authorize_setup import example_app

from meterstream.aggregation.client import connect
from meterstream.aggregation.ddl import create_schema
from meterstream.ingest.translate import MeterDefinition

BASE = "/compat/openmeter/api"


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _text(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def put_usage(client, db: str, rows: int, start: datetime, end: datetime) -> None:  # type: ignore[no-untyped-def]
    fields = ["tenant", "id", "customer", "subject", "meter", "time", "period", "quantity", "amount", "cumulative",
              "currency", "plan", "line", "dimensions", "source", "src_partition", "src_offset"]  # fmt: skip
    rng = random.Random(7)
    span = (end - start).total_seconds()
    for chunk in range(0, 2 * rows, 50_000):
        lines = []
        for i in range(chunk, min(chunk + 50_000, 2 * rows)):
            t = start + timedelta(seconds=rng.random() * span)
            lines.append(orjson.dumps({
                "tenant": "t1", "id": f"e{i}", "customer": "acme" if i % 2 == 0 else f"other-{i % 97}",
                "subject": "u1", "meter": "tokens", "time": _text(t), "period": _text(t)[:7],
                "quantity": str(rng.randint(1, 500)), "amount": "0", "cumulative": "0", "currency": "EUR",
                "plan": "prepaid", "line": "tokens", "dimensions": {"model": "gpt" if i % 3 else "other"},
                "source": "bench", "src_partition": 0, "src_offset": i,
            }))  # fmt: skip
        client.raw_insert(f"{db}.rated_usage", fields, b"\n".join(lines), fmt="JSONEachRow")


async def _time(client: httpx.AsyncClient, path: str, headers: dict, requests: int) -> dict:
    for _ in range(5):  # warm-up
        r = await client.get(path, headers=headers)
        assert r.status_code == 200, r.text
    lat, c0 = [], time.process_time()
    for _ in range(requests):
        s = time.perf_counter()
        r = await client.get(path, headers=headers)
        lat.append((time.perf_counter() - s) * 1000)
        assert r.status_code == 200, r.text
    cpu_ms = round((time.process_time() - c0) / requests * 1000, 2)
    return {"requests": requests, "p50_ms": round(_pct(lat, 50), 2), "p99_ms": round(_pct(lat, 99), 2),
            "mean_ms": round(statistics.fmean(lat), 2), "cpu_ms_per_request": cpu_ms, "sample": r.json()}  # fmt: skip


async def run(rows: int, requests: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="entitlement-bench-"))
    ch = connect(dsn=f"chdb://{home / 'chdb'}")
    app = example_app(home, clickhouse_client=ch)
    db = app.state.settings.clickhouse_database
    create_schema(ch, db)
    key = app.state.keys.create("t1", "admin", "bench")[1]
    headers = {"Authorization": f"Bearer {key}"}
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    month = now.replace(day=1, hour=0, minute=0)
    last_month = (month - timedelta(days=1)).replace(day=1)
    put_usage(ch, db, rows, last_month, now - timedelta(minutes=1))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:

        async def post(path: str, body: dict) -> dict:
            r = await client.post(f"{BASE}{path}", headers=headers, json=body)
            assert r.status_code in (200, 201), r.text
            return r.json()

        # the meter straight into the store (its POST would replay unmatched events through Kafka, absent here)
        app.state.openmeter.meters.create("t1", MeterDefinition("tokens", "prompt", "SUM", "$.tokens",
                                                                {"model": "$.model"}))  # fmt: skip
        customer = await post("/v1/customers", {"name": "ACME", "key": "acme"})
        await post("/v1/features", {"key": "gpt_tokens", "name": "GPT tokens", "meterSlug": "tokens",
                                    "meterGroupByFilters": {"model": "gpt"}})  # fmt: skip
        await post("/v2/customers/acme/entitlements", {
            "type": "metered", "featureKey": "gpt_tokens", "usagePeriod": {"interval": "MONTH", "anchor": _text(month)},
            "measureUsageFrom": _text(last_month), "issueAfterReset": 10_000_000,
        })  # fmt: skip
        grant = "/v2/customers/acme/entitlements/gpt_tokens/grants"
        await post(grant, {"amount": 5_000_000, "priority": 2, "effectiveAt": _text(month + timedelta(days=1)),
                           "expiration": {"duration": "MONTH", "count": 1}})  # fmt: skip
        out = {
            "rows_of_the_customer": rows, "rows_total": 2 * rows, "requests": requests,
            "meter_query": await _time(client, f"{BASE}/v1/meters/tokens/query?filterCustomerId={customer['id']}"
                                               f"&from={_text(month)}&filterGroupBy[model]=gpt", headers, requests),
            "value": await _time(client, f"{BASE}/v2/customers/acme/entitlements/gpt_tokens/value", headers, requests),
            "access": await _time(client, f"{BASE}/v1/customers/acme/access", headers, requests),
        }  # fmt: skip
    for name in ("value", "access"):
        out[f"{name}_over_meter_query_p50"] = round(out[name]["p50_ms"] / out["meter_query"]["p50_ms"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = asyncio.run(run(args.rows, args.requests))
    for name in ("meter_query", "value", "access"):
        r = out[name]
        print(f"{name:12s} p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  CPU {r['cpu_ms_per_request']:.2f} ms")
    print(f"value / meter_query (p50) {out['value_over_meter_query_p50']}, access / meter_query "
          f"{out['access_over_meter_query_p50']}; sample value {out['value']['sample']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
