"""HTTP API throughput and latency (issue 13), one command:

    python bench/api.py [--seconds 10] [--json FILE] [--with-pipeline] [--keep-broker]

Starts (or reuses, METERSTREAM_KAFKA_BOOTSTRAP) a broker, fresh topics, an API key, and one API process
(`meterstream serve`, uvicorn) on a free port; `--with-pipeline` also runs the processor and the sink
(as `meterstream demo` does) while the load runs. The load generator is `wrk` (keep-alive connections,
a Lua script that stamps unique event ids into a prepared body, so nothing is a duplicate):

1. batches of 1,000 events, `--batch-connections` (8) connections: events/s *accepted* = events in
   the 200 answers wrk completed (the 200 is sent only after Kafka acknowledged every event; a sample
   request checks that every event of the body is accepted), cross-checked with the API's own
   `meterstream_api_events_total{status="accepted"}`; target >= 50,000/s;
2. single-event requests, `--single-connections` (16) connections: requests/s;
3. batches of 100 events, `--latency-connections` (4) connections: p50/p99 request latency
   (wrk's latency histogram); target p99 <= 50 ms.

Every phase also reports non-2xx answers (there should be none) and the API process's CPU seconds.
The machine is shared and noisy: report as measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

from meterstream.deploy import kafka_local
from meterstream.deploy.pipeline import Pipeline, demo_environment
from meterstream.deploy.ports import free_port, free_port_pair
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.entities.keys import KeyRepository
from meterstream.ingest.topics import ensure_topics
from meterstream.schemas.settings import Settings, settings_from_env

MARK = "@@@@@@@@@@"  # replaced per request by a run nonce + thread id + request counter: unique ids

LUA = r"""
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  local f = io.open(args[1], "rb"); template = f:read("*a"); f:close()
  auth = args[2]
  run = args[3]
end
function request()
  counter = counter + 1
  local stamp = string.format("%s%02d%08d", run, tid, counter)
  local body = template:gsub("@@@@@@@@@@", stamp)
  return wrk.format("POST", "/v1/events",
    {["Content-Type"] = "application/json", ["Authorization"] = auth}, body)
end
function done(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def say(msg: str) -> None:
    print(f"[bench-api] {msg}", flush=True)


def body_template(n: int, tenant_customers: int = 50) -> bytes:
    """n events with ids `<MARK>-<i>`; recent times (the processor refuses events far in the past)."""
    when = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    events = [
        {"id": f"{MARK}-{i}", "customer": f"org-{i % tenant_customers:03d}", "meter": "api_calls",
         "quantity": str(1 + i % 5), "time": when, "dimensions": {"region": "eu-west-1"}}
        for i in range(n)
    ]  # fmt: skip
    return orjson.dumps(events if n > 1 else events[0])


def accepted_count(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith('meterstream_api_events_total{status="accepted"}'):
            return float(line.split()[-1])
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(base: str, token: str, body: Path, script: Path, connections: int, seconds: float) -> dict:
    threads = max(1, min(2, connections))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "30s", "-s", str(script),
           base, "--", str(body), f"Bearer {token}", uuid.uuid4().hex[:8]]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    return orjson.loads(line.removeprefix("WRKJSON "))


def phase(name: str, base: str, token: str, api_pid: int, work: Path, events: int, connections: int,
          seconds: float) -> dict:  # fmt: skip
    body = work / f"body-{events}.json"
    body.write_bytes(body_template(events))
    script = work / "post.lua"
    script.write_text(LUA)
    # one request by hand: every event of the prepared body must come back accepted, so each 2xx wrk
    # counts is `events` acknowledged events
    sample = body.read_bytes().replace(MARK.encode(), b"sample-" + uuid.uuid4().hex[:3].encode())
    check = httpx.post(f"{base}/v1/events", content=sample, timeout=60,
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})  # fmt: skip
    assert check.status_code == 200 and check.json()["accepted"] == events, check.text[:300]
    run_wrk(base, token, body, script, connections, min(2.0, seconds))  # warm-up, not counted
    time.sleep(1.0)  # requests in flight when wrk stopped finish
    before, cpu0 = accepted_count(base), cpu_seconds(api_pid)
    res = run_wrk(base, token, body, script, connections, seconds)
    cpu1 = cpu_seconds(api_pid)
    time.sleep(1.0)
    after = accepted_count(base)
    dur = res["duration_us"] / 1e6
    ok = (res["requests"] - res["non2xx"]) * events
    out = {
        "phase": name, "events_per_request": events, "connections": connections, "seconds": round(dur, 2),
        "requests": res["requests"], "requests_per_s": round(res["requests"] / dur, 1),
        # events in the 2xx answers wrk completed (the primary figure) and, as a cross-check, the API's
        # counter (it also counts requests still in flight when wrk stopped, up to one per connection)
        "accepted_events": ok, "accepted_events_per_s": round(ok / dur, 1),
        "api_counter_accepted": int(after - before),
        "non2xx": res["non2xx"], "socket_errors": res["socket_errors"], "timeouts": res["timeouts"],
        "p50_ms": res["p50_us"] / 1000, "p90_ms": res["p90_us"] / 1000, "p99_ms": res["p99_us"] / 1000,
        "max_ms": res["max_us"] / 1000, "api_cpu_s": round(cpu1 - cpu0, 2),
        "api_cpu_us_per_event": round((cpu1 - cpu0) / max(1, ok) * 1e6, 1),
    }  # fmt: skip
    say(f"{name}: {out['requests_per_s']} req/s, {out['accepted_events_per_s']} accepted events/s, "
        f"p50 {out['p50_ms']:.1f} ms, p99 {out['p99_ms']:.1f} ms, non-2xx {out['non2xx']}")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each measured phase")
    ap.add_argument("--batch-connections", type=int, default=8)
    ap.add_argument("--single-connections", type=int, default=16)
    ap.add_argument("--latency-connections", type=int, default=4)
    ap.add_argument("--with-pipeline", action="store_true", help="processor and sink run during the load")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--home", type=Path, default=None, help="data directory (default: a fresh temporary one)")
    ap.add_argument("--keep-broker", action="store_true")
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench/api.py needs `wrk` (apt-get install wrk)", file=sys.stderr)
        return 2

    home = (args.home or Path(tempfile.mkdtemp(prefix="meterstream-bench-api-"))).resolve()
    base_env = {k: v for k, v in os.environ.items() if k.startswith("METERSTREAM_")}
    own_broker = "METERSTREAM_KAFKA_BOOTSTRAP" not in base_env
    settings = Settings(home=home, **({} if not own_broker else {"kafka_port": free_port_pair()}))
    if own_broker:
        kafka_local.start(settings)
    run_id = uuid.uuid4().hex[:8]
    env = demo_environment(settings, home / "out", run_id)
    env.update({"METERSTREAM_KAFKA_PORT": str(settings.kafka_port), "METERSTREAM_API_RATE_LIMIT_PER_S": "0",
                "METERSTREAM_API_PORT": str(free_port())})  # fmt: skip
    run = settings_from_env(env)
    ensure_topics(run)
    engine = make_engine(run)
    migrate(run, engine)
    _info, token = KeyRepository(session_factory(engine)).create("cloudco", "ingest", "bench")
    pipeline = Pipeline(env, home / "logs")
    results: dict = {"with_pipeline": args.with_pipeline, "started": datetime.now(UTC).isoformat(),
                     "cpus": os.cpu_count(), "load_1m_before": os.getloadavg()[0]}  # fmt: skip
    try:
        if args.with_pipeline:
            subprocess.run([sys.executable, "-m", "meterstream.deploy.cli", "init"], env=env, check=True,
                           capture_output=True)  # fmt: skip
            pipeline.start("processor")
            pipeline.start("sink")
        api = pipeline.start("api")
        base = f"http://127.0.0.1:{run.api_port}"
        deadline = time.monotonic() + 60
        while True:
            pipeline.check_alive()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not become ready in 60 s")
            time.sleep(0.3)
        work = home / "wrk"
        work.mkdir(exist_ok=True)
        results["phases"] = [
            phase("batch-1000", base, token, api.pid, work, 1000, args.batch_connections, args.seconds),
            phase("single", base, token, api.pid, work, 1, args.single_connections, args.seconds),
            phase("batch-100", base, token, api.pid, work, 100, args.latency_connections, args.seconds),
        ]
        results["load_1m_after"] = os.getloadavg()[0]
        p = {x["phase"]: x for x in results["phases"]}
        results["summary"] = {
            "batch_1000_accepted_events_per_s": p["batch-1000"]["accepted_events_per_s"],
            "single_event_requests_per_s": p["single"]["requests_per_s"],
            "batch_100_p99_ms": p["batch-100"]["p99_ms"],
        }
    finally:
        for name in list(pipeline.procs):
            pipeline.stop(name)
        engine.dispose()
        if own_broker and not args.keep_broker:
            kafka_local.stop(settings)
        if args.home is None and not args.keep_broker:
            shutil.rmtree(home, ignore_errors=True)
    print(orjson.dumps(results["summary"], option=orjson.OPT_INDENT_2).decode())
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
