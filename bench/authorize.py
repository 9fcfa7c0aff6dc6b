"""POST /v1/authorize latency (issue 16: p99 <= 5 ms locally), one command:

    python bench/authorize.py [--requests 5000] [--customers 1000] [--json FILE]

Builds the API app in this process with the set-up the authorization tests use (bench/authorize_setup.py: SQLite
entity store in a temporary home, the example plan of docs/authorization.md: a Berlin voice tariff with connect
fee, 60/60 increments, peak/off-peak bands and a bundle, plus a unit-priced usage meter), stores `--customers`
customers and gives each a balance snapshot in the app's balance feed, as the `balances` topic reader does
(api/balance_feed.py), then sends the requests
one at a time through the ASGI app (httpx's ASGITransport: the whole FastAPI stack with authentication, the
per-key rate limit off, validation, the store reads and the answer; no socket, no uvicorn). Three mixes, each
timed per request with perf_counter:

1. `voice`: a call's longest duration (max_duration over the tariff, the charge by the session rater);
2. `voice_hold`: the same with `hold: true` and a new session id each time (one SQLite write per request);
3. `usage`: a usage meter's largest quantity;

and, first, `core_voice` (the voice authorization called directly, no HTTP: api/authorization.py),
`client_only` (httpx posting to an ASGI app that answers at once: the harness's own CPU, part of every mix's
CPU figure; a real client pays it in its own process) and `baseline_404` (an authenticated GET of a missing hold:
the HTTP stack's own cost), for comparison.

The garbage collector is set as `meterstream serve` sets it once the app is built (meterstream/collector.py).
Reports p50/p90/p99/max per mix, requests/s and the process's CPU time per request (the figure a loaded
machine distorts least: wall latency waits for the CPU when other jobs hold it; see `loadavg` in the JSON).
The ledger fallback (no snapshot: wallets + ClickHouse) is not measured here (it needs ClickHouse;
api/wallet_usage.py). The machine is shared and noisy: report as measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

# bench/authorize_setup.py: this script's folder is on sys.path
from authorize_setup import add_customer, example_app

from meterstream.collector import settle_after_start


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _run(app, key: str, customers: int, requests: int) -> dict:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {key}"}
    mixes = {
        # a switch asks for at most an hour; 17:55 crosses the band change at 18:00
        "voice": lambda i: {"meter": "voice_seconds", "dimensions": {"destination": "+4930123"},
                            "start": "2025-03-04T17:55:00+01:00", "duration_seconds": "3600"},
        "voice_hold": lambda i: {"meter": "voice_seconds", "dimensions": {"destination": "+4930123"},
                                 "duration_seconds": "600", "hold": True, "session_id": f"s{i}"},
        "usage": lambda i: {"meter": "api_calls", "quantity": "1000"},
    }  # fmt: skip
    out: dict = {"client_only": await _client_only(headers, requests)}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        # the stack's own cost, for comparison: an authenticated GET of a hold that does not exist (404)
        lat, c0 = [], time.process_time()
        for _ in range(requests):
            s = time.perf_counter()
            r = await client.get("/v1/authorize/holds/none", headers=headers)
            lat.append((time.perf_counter() - s) * 1000)
            assert r.status_code == 404, r.text
        out["baseline_404"] = {"requests": requests, "p50_ms": round(_pct(lat, 50), 3),
                               "p99_ms": round(_pct(lat, 99), 3),
                               "cpu_us_per_request": round((time.process_time() - c0) / requests * 1e6, 1)}  # fmt: skip
        print(
            f"baseline    p50 {out['baseline_404']['p50_ms']:.3f} ms  p99 {out['baseline_404']['p99_ms']:.3f}  "
            f"CPU {out['baseline_404']['cpu_us_per_request']:.0f} us/request (GET a missing hold: auth + 404)"
        )
        for name, body in mixes.items():
            for i in range(min(200, requests)):  # warm-up (plan caches, compiled tariff, connection)
                r = await client.post("/v1/authorize", headers=headers,
                                      json={"customer": f"c{i % customers}", **body(-i - 1)})  # fmt: skip
                assert r.status_code == 200, r.text
            lat = []
            c0 = time.process_time()
            t0 = time.perf_counter()
            for i in range(requests):
                payload = {"customer": f"c{i % customers}", **body(i)}
                s = time.perf_counter()
                r = await client.post("/v1/authorize", headers=headers, json=payload)
                lat.append((time.perf_counter() - s) * 1000)
                if r.status_code != 200:
                    raise SystemExit(f"{name}: {r.status_code} {r.text}")
            wall = time.perf_counter() - t0
            cpu = time.process_time() - c0
            sample = r.json()
            out[name] = {
                "requests": requests, "p50_ms": round(_pct(lat, 50), 3), "p90_ms": round(_pct(lat, 90), 3),
                "p99_ms": round(_pct(lat, 99), 3), "max_ms": round(max(lat), 3),
                "mean_ms": round(statistics.fmean(lat), 3), "requests_per_s": round(requests / wall, 1),
                "cpu_us_per_request": round(cpu / requests * 1e6, 1),
                "sample": {k: sample[k] for k in ("balance_source", "available", "allowed", "charge")},
            }  # fmt: skip
            print(f"{name:11s} p50 {out[name]['p50_ms']:.3f} ms  p90 {out[name]['p90_ms']:.3f}  "
                  f"p99 {out[name]['p99_ms']:.3f}  max {out[name]['max_ms']:.1f}  "
                  f"{out[name]['requests_per_s']:.0f} req/s  CPU {out[name]['cpu_us_per_request']:.0f} us/request  "
                  f"(allowed {sample['allowed']})")  # fmt: skip
    return out


async def _noop_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """An ASGI app that answers `{}` at once: what the harness (httpx building and reading requests) costs alone."""
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def _client_only(headers: dict, requests: int) -> dict:
    body = {"customer": "c0", "meter": "voice_seconds", "dimensions": {"destination": "+4930123"},
            "start": "2025-03-04T17:55:00+01:00", "duration_seconds": "3600"}  # fmt: skip
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_noop_app), base_url="http://bench") as client:
        c0 = time.process_time()
        for _ in range(requests):
            await client.post("/v1/authorize", headers=headers, json=body)
        cpu = round((time.process_time() - c0) / requests * 1e6, 1)
    print(
        f"client_only CPU {cpu:.0f} us/request (the harness alone: httpx to an app that answers at once; "
        "included in every mix's CPU figure)"
    )
    return {"requests": requests, "cpu_us_per_request": cpu}


def _core(app, customers: int, requests: int) -> dict:  # type: ignore[no-untyped-def]
    """The authorization itself (api/authorization.py: plan, balance, holds, max_duration, charge), no HTTP."""
    from datetime import datetime
    from decimal import Decimal

    from meterstream.api.authorization import Request, authorize
    from meterstream.api.routes.authorize import _context

    ctx = _context(app)
    start = datetime.fromisoformat("2025-03-04T17:55:00+01:00")
    reqs = [Request(f"c{i}", "voice_seconds", {"destination": "+4930123"}, duration_seconds=Decimal(3600), start=start)
            for i in range(customers)]  # fmt: skip
    for i in range(min(200, requests)):
        authorize(ctx, "t1", reqs[i % customers])
    lat, c0 = [], time.process_time()
    for i in range(requests):
        s = time.perf_counter()
        authorize(ctx, "t1", reqs[i % customers])
        lat.append((time.perf_counter() - s) * 1000)
    out = {"requests": requests, "p50_ms": round(_pct(lat, 50), 3), "p90_ms": round(_pct(lat, 90), 3),
           "p99_ms": round(_pct(lat, 99), 3), "max_ms": round(max(lat), 3),
           "cpu_us_per_request": round((time.process_time() - c0) / requests * 1e6, 1)}  # fmt: skip
    print(
        f"core_voice  p50 {out['p50_ms']:.3f} ms  p90 {out['p90_ms']:.3f}  p99 {out['p99_ms']:.3f}  "
        f"CPU {out['cpu_us_per_request']:.0f} us/request (the voice authorization without HTTP)"
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = example_app(Path(tmp), clickhouse_http_port=0)
        t = time.perf_counter()
        for i in range(args.customers):
            add_customer(app, f"c{i}", balance="50.00")
        print(f"{args.customers} customers stored in {time.perf_counter() - t:.1f} s")
        key = app.state.keys.create("t1", "ingest", "bench")[1]
        settle_after_start()  # the collector as `meterstream serve` sets it once the app is built
        results = {"core_voice": _core(app, args.customers, args.requests)}
        results.update(asyncio.run(_run(app, key, args.customers, args.requests)))
    load = os.getloadavg()
    doc = {"bench": "authorize", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "customers": args.customers, "loadavg": [round(x, 2) for x in load], "target_p99_ms": 5.0,
           "transport": "in-process ASGI (httpx.ASGITransport), one request at a time", "results": results}  # fmt: skip
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
