"""Prepaid wallets in real time through the whole deployed pipeline (issue 16), one command:

    python bench/wallet_latency.py [--events 200] [--trials 200] [--json FILE]

Starts `meterstream up` (its local broker, the processor, the sink, the API with its balance feed) on free ports
in a temporary home, as the API pipeline tests do, takes an admin key of tenant cloudco (`meterstream keys
create`), and measures from this process, every time on the monotonic clock of this machine:

1. **balance**: customer `acme` with a 1,000.00 USD wallet (rate 1); `--events` usage events, one at a time,
   each 10,000 storage GB-hours = 1.37 USD on the demo catalog's cloud-standard plan (deploy/demo_catalog.yaml).
   From just before POST /v1/events to the first read that shows the new balance, polled every 5 ms in two
   threads at once: `GET /v1/wallets/{id}/balance` (`balance` = 1,000.00 - 1.37 n) and Lago's
   `GET /compat/lago/api/v1/wallets/{lago_id}` (`ongoing_balance_cents` = 100,000 - 137 n). A warm-up event
   before is not counted.
2. **suspend**: `--trials` customers `s<i>`, each with a wallet of exactly 1.37 USD, made first; then, one at a
   time, one event of 1.37 USD brings the balance to 0.00, and the time is from just before its POST to the
   `suspend` command of that customer arriving at a consumer of the `provisioning` topic (read from the start
   of the topic in a thread, arrival stamped at the consumer's poll).
3. **reactivate**: right after each suspension, a paid top-up of 1.37 through `POST /v1/wallets/{id}/transactions`;
   the time from just before the POST to that customer's `reactivate` on the topic.

Targets (issue 16): balance p99 <= 1 s, suspend p99 <= 1 s. Percentiles are nearest-rank over the samples;
the JSON (default bench/results/wallet-latency-<today>-s12.json) has n, p50, p95, p99, max (seconds) per
measure, the polling's own request time, the load average before, between the phases and after (the machine is
shared: figures under load are slower than the pipeline is), and the commit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from meterstream.api.compat.lago.wallets import lago_id
from meterstream.deploy.ports import free_port, free_port_pair
from meterstream.schemas.provisioning import PROVISIONING, decode_command
from meterstream.schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
EVENT_CENTS = 137  # 10,000 GB-hours x 0.000137 USD
WALLET_CENTS = 100_000
POLL_S = 0.005
LIMIT_S = 10.0  # a sample slower than this fails the run (something is broken, not slow)


def say(msg: str) -> None:
    print(f"[wallet-latency] {msg}", file=sys.stderr, flush=True)


def call(url: str, key: str, method: str = "GET", body: object = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    req = urllib.request.Request(url, method=method, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as answer:
        return json.loads(answer.read())


def usd(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def stats(values: list[float]) -> dict[str, Any]:
    """n, p50, p95, p99, max in seconds (nearest rank: the smallest value with at least q of the samples <= it)."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}

    def q(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)], 4)

    return {"n": len(ordered), "p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": round(ordered[-1], 4),
            "min": round(ordered[0], 4)}  # fmt: skip


@contextmanager
def pipeline(home: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """`meterstream up` on free ports with its home in `home`: (API base URL, admin key of cloudco, env)."""
    ports = {"METERSTREAM_KAFKA_PORT": free_port_pair(), "METERSTREAM_PROCESSOR_METRICS_PORT": free_port(),
             "METERSTREAM_SINK_METRICS_PORT": free_port(), "METERSTREAM_CLICKHOUSE_HTTP_PORT": free_port()}  # fmt: skip
    api = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update({k: str(v) for k, v in ports.items()}, METERSTREAM_HOME=str(home), METERSTREAM_KAFKA_HEAP="512m")
    out, err = home.parent / "up.out", home.parent / "up.err"
    cli = [sys.executable, "-m", "meterstream.deploy.cli"]
    with open(out, "wb") as o, open(err, "wb") as e:
        up = subprocess.Popen([*cli, "up", "--port", str(api)], env=env, stdout=o, stderr=e,
                              stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while "meterstream is up" not in out.read_text():
            if up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"meterstream up did not come up:\n{err.read_text()[-3000:]}")
            time.sleep(0.5)
        key = subprocess.run([*cli, "keys", "create", "--tenant", "cloudco", "--role", "admin"], env=env,
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]  # fmt: skip
        yield f"http://127.0.0.1:{api}", key, env
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(120)
        except subprocess.TimeoutExpired:
            up.kill()


class CommandTail(threading.Thread):
    """Reads the provisioning topic from its start; the first arrival (monotonic) of each (customer, command)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="provisioning-tail", daemon=True)
        self.settings, self.topic = settings, settings.topic(PROVISIONING)
        self.first: dict[tuple[str, str], float] = {}
        self.count = 0
        self.ready, self.stopping = threading.Event(), threading.Event()
        self.cond = threading.Condition()

    def run(self) -> None:
        consumer = Consumer({"bootstrap.servers": self.settings.bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 5})  # fmt: skip
        try:
            while not self.stopping.is_set():
                meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
                if meta is not None and meta.error is None and meta.partitions:
                    break
                time.sleep(0.5)
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in meta.partitions])
            self.ready.set()
            while not self.stopping.is_set():
                msg = consumer.poll(0.05)
                if msg is None or msg.error() is not None:
                    continue
                arrived = time.monotonic()
                command = decode_command(msg.value())
                with self.cond:
                    self.first.setdefault((command.customer, command.command), arrived)
                    self.count += 1
                    self.cond.notify_all()
        finally:
            consumer.close()

    def wait(self, customer: str, command: str, timeout: float = LIMIT_S) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: (customer, command) in self.first, timeout):
                raise RuntimeError(f"no {command} of {customer} on {self.topic} within {timeout} s")
            return self.first[(customer, command)]


def until(read: Callable[[], Any], expected: Any, started: float, limit: float = LIMIT_S) -> tuple[float, int]:
    """(seconds from `started` to the first read answering `expected`, reads made)."""
    reads = 0
    while True:
        got = read()
        reads += 1
        now = time.monotonic()
        if got == expected:
            return now - started, reads
        if now - started > limit:
            raise RuntimeError(f"still {got!r}, expected {expected!r}, after {limit} s")
        time.sleep(POLL_S)


class Bench:
    def __init__(self, base: str, key: str) -> None:
        self.base, self.key = base, key
        self.seq = 0

    def post_event(self, customer: str) -> None:
        self.seq += 1
        event = {"id": f"wl-{self.seq}", "customer": customer, "meter": "storage_gb_hours", "quantity": "10000",
                 "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")}  # fmt: skip
        call(f"{self.base}/v1/events", self.key, "POST", [event])

    def customer_with_wallet(self, customer: str, cents: int) -> str:
        call(f"{self.base}/v1/customers/{customer}", self.key, "PUT", {"name": customer, "currency": "USD"})
        return call(f"{self.base}/v1/customers/{customer}/wallets", self.key, "POST",
                    {"paid_credits": usd(cents)})["id"]  # fmt: skip

    def balances(self, events: int) -> dict[str, Any]:
        wallet = self.customer_with_wallet("acme", WALLET_CENTS)
        v1_url = f"{self.base}/v1/wallets/{wallet}/balance"
        lago_url = f"{self.base}/compat/lago/api/v1/wallets/{lago_id(wallet)}"
        v1, lago, reads, request_s = [], [], [], []

        def v1_read() -> str:
            t = time.monotonic()
            balance = call(v1_url, self.key)["balance"]
            request_s.append(time.monotonic() - t)
            return balance

        def lago_read() -> int:
            return call(lago_url, self.key)["wallet"]["ongoing_balance_cents"]

        with ThreadPoolExecutor(2) as pool:
            for i in range(events + 1):  # event 0 warms the pipeline up
                cents = WALLET_CENTS - EVENT_CENTS * (i + 1)
                limit = 120.0 if i == 0 else LIMIT_S
                started = time.monotonic()
                self.post_event("acme")
                a = pool.submit(until, v1_read, usd(cents), started, limit)
                b = pool.submit(until, lago_read, cents, started, limit)
                (s1, r1), (s2, r2) = a.result(), b.result()
                if i:
                    v1.append(s1)
                    lago.append(s2)
                    reads.append(r1 + r2)
                if i % 50 == 0:
                    say(f"balance {i}/{events}: /v1 {s1 * 1000:.0f} ms, Lago {s2 * 1000:.0f} ms")
        return {"v1": stats(v1), "lago": stats(lago), "v1_request": stats(request_s),
                "reads_per_event_mean": round(sum(reads) / max(1, len(reads)), 1)}  # fmt: skip

    def suspensions(self, trials: int, tail: CommandTail) -> dict[str, Any]:
        wallets = [self.customer_with_wallet(f"s{i}", EVENT_CENTS) for i in range(trials)]
        time.sleep(2.0)  # the processor has read every wallet from the entities topic
        suspend, reactivate = [], []
        for i, wallet in enumerate(wallets):
            customer = f"s{i}"
            started = time.monotonic()
            self.post_event(customer)  # 1.37 - 1.37 = 0.00: suspend
            suspend.append(tail.wait(customer, "suspend") - started)
            started = time.monotonic()
            call(f"{self.base}/v1/wallets/{wallet}/transactions", self.key, "POST",
                 {"kind": "paid", "credits": usd(EVENT_CENTS), "reference": f"top-up-{customer}"})  # fmt: skip
            reactivate.append(tail.wait(customer, "reactivate") - started)
            if i % 50 == 0:
                say(f"trial {i}/{trials}: suspend {suspend[-1] * 1000:.0f} ms, reactivate "
                    f"{reactivate[-1] * 1000:.0f} ms")  # fmt: skip
        return {"suspend": stats(suspend), "reactivate": stats(reactivate), "commands_seen": tail.count}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--trials", type=int, default=200)
    today = datetime.now(UTC).date().isoformat()
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / f"wallet-latency-{today}-s12.json")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    result: dict[str, Any] = {"bench": "bench/wallet_latency.py", "commit": commit,
                              "started": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                              "events": args.events, "trials": args.trials, "poll_interval_s": POLL_S,
                              "targets_s": {"balance_p99": 1.0, "suspend_p99": 1.0},
                              "loadavg": {"before": load()}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="wallet-latency-") as tmp:
        home = Path(tmp) / "home"
        with pipeline(home) as (base, key, env):
            settings = Settings(**{"home": home, "kafka_port": int(env["METERSTREAM_KAFKA_PORT"])})
            tail = CommandTail(settings)
            tail.start()
            bench = Bench(base, key)
            result["loadavg"]["up"] = load()
            say("pipeline up; balances")
            result["balance"] = bench.balances(args.events)
            result["loadavg"]["after_balance"] = load()
            if not tail.ready.wait(60):
                raise RuntimeError("the provisioning topic did not appear")
            say("suspend / reactivate")
            result.update(bench.suspensions(args.trials, tail))
            result["loadavg"]["after"] = load()
            tail.stopping.set()
    met = {"balance_v1_p99": result["balance"]["v1"]["p99"] <= 1.0,
           "balance_lago_p99": result["balance"]["lago"]["p99"] <= 1.0,
           "suspend_p99": result["suspend"]["p99"] <= 1.0}  # fmt: skip
    result["met"] = met
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    say(f"written {args.json}")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
