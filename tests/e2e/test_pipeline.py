"""End to end on the real broker and embedded ClickHouse (chdb): events in, invoices out.

Expected totals are worked out by hand from tests/data/catalog.yaml (see the comments), and checked
again with a tiny reference pricer that lives here, independent of `rating`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from meterstream.schemas.settings import Settings, settings_from_env

DATA = Path(__file__).resolve().parents[1] / "data"
T = "2026-10-{:02d}T{:02d}:00:00.000Z"


def ev(i: str, tenant: str, customer: str, meter: str, q: str, day: int, hour: int = 12) -> bytes:
    return orjson.dumps(
        {
            "id": i,
            "tenant": tenant,
            "customer": customer,
            "meter": meter,
            "quantity": q,
            "time": T.format(day, hour),
            "subject": "u1",
        }
    )


VALID = [
    ev("a1", "t1", "c1", "api_calls", "8", 20),
    ev("a2", "t1", "c1", "api_calls", "5", 3),  # out of order
    ev("a3", "t1", "c1", "api_calls", "100", 11),
    ev("s1", "t1", "c1", "storage_gb_hours", "1000.5", 1),
    ev("s2", "t1", "c1", "storage_gb_hours", "250.25", 31, 23),
    ev("b1", "t1", "c2", "api_calls", "10", 5),
    ev("v1", "t1", "big", "api_calls", "50", 7),
    ev("v2", "t1", "big", "api_calls", "60", 8),
    ev("c1", "t1", "big", "voice_seconds", "61", 9),
    ev("c2", "t1", "big", "voice_seconds", "59", 9, 13),
    ev("x1", "t2", "x", "api_calls", "100", 15),
]
DUPLICATES = [
    VALID[1],  # exact re-send of a2
    ev("x1", "t2", "x", "api_calls", "999", 16),  # same identity, other content: first one wins
    VALID[0],
]
MALFORMED = [
    b"{this is not json",
    orjson.dumps({"id": "m2", "tenant": "t1", "meter": "api_calls", "quantity": "1", "time": T.format(1, 1)}),
    orjson.dumps(
        {
            "id": "m3",
            "tenant": "t1",
            "customer": "c1",
            "meter": "api_calls",
            "quantity": "-4",
            "time": T.format(1, 1),
        }
    ),
]
UNRATABLE = [ev("u1", "nobody", "c9", "api_calls", "1", 2)]

# Worked by hand:
#  t1/c1 api_calls graduated 0-10 free, 10-100 @0.5, >100 @0.25: 113 -> 90*0.5 + 13*0.25 = 48.25
#  t1/c1 storage unit 0.001: 1250.75 -> 1.25075 -> 1.25          => USD 49.50
#  t1/c2 api_calls: 10, all in the free tier                       => USD 0.00
#  t1/big api_calls volume (<=100 @0.10 +5, above @0.05 +5): 110 -> 110*0.05 + 5 = 10.50
#  t1/big voice 120 s -> 2 started minutes * 0.06 = 0.12          => EUR 10.62
#  t2/x api_calls volume: 100 -> 100*0.10 + 5 = 15.00             => EUR 15.00
EXPECTED = {
    ("t1", "c1"): Decimal("49.50"),
    ("t1", "c2"): Decimal("0.00"),
    ("t1", "big"): Decimal("10.62"),
    ("t2", "x"): Decimal("15.00"),
}


def reference_total(price: dict, quantity: Decimal) -> Decimal:
    """A deliberately naive pricer for the models this catalog uses."""
    if "divide_by" in price:
        quantity = (quantity / Decimal(price["divide_by"])).to_integral_value(ROUND_CEILING)
    if price["model"] == "unit":
        return quantity * Decimal(price["unit_amount"])
    tiers, total, lower = price["tiers"], Decimal(0), Decimal(0)
    if price["model"] == "volume":
        for tier in tiers:
            if tier["up_to"] is None or quantity <= Decimal(tier["up_to"]):
                return quantity * Decimal(tier["unit_amount"]) + Decimal(tier.get("flat_amount", "0"))
    for tier in tiers:  # graduated
        upper = Decimal(tier["up_to"]) if tier["up_to"] is not None else quantity
        if quantity > lower:
            total += (min(quantity, upper) - lower) * Decimal(tier["unit_amount"])
        lower = upper
    return total


def produce(settings: Settings, values: list[bytes]) -> None:
    from meterstream.ingest.producer import make_producer, produce_all

    def key(v: bytes) -> bytes:
        try:
            d = orjson.loads(v)
            return f"{d.get('tenant')}/{d.get('customer')}".encode()
        except orjson.JSONDecodeError:
            return b"?"

    produce_all(make_producer(settings), settings.topic("usage-events"), ((key(v), v) for v in values))


def run_settings(kafka_settings: Settings, tmp_path: Path) -> tuple[Settings, dict[str, str]]:
    from meterstream.deploy.ports import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update(
        {
            "METERSTREAM_HOME": str(kafka_settings.home),
            "METERSTREAM_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
            "METERSTREAM_TOPIC_PREFIX": f"e2e-{uuid.uuid4().hex[:8]}.",
            "METERSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
            # its own entity store: the session home's is shared with the chaos run, whose issued invoices a close
            # of the same period would otherwise take as this system's (closed = the store's issued records)
            "METERSTREAM_DATABASE_URL": f"sqlite:///{tmp_path / 'entities.db'}",
            "METERSTREAM_CATALOG": str(DATA / "catalog.yaml"),
            "METERSTREAM_PROCESSOR_METRICS_PORT": str(free_port()),
            "METERSTREAM_SINK_METRICS_PORT": str(free_port()),
            "METERSTREAM_CLICKHOUSE_HTTP_PORT": str(free_port()),  # the sink's front: never the fixed 8123
            "METERSTREAM_SINK_BATCH_SECONDS": "0.5",
            # the events are dated 2026-10 whatever the day: keep them inside the receive-time window
            "METERSTREAM_EVENT_MAX_AGE_DAYS": "36500",
        }
    )
    settings = settings_from_env(env)
    return settings, env


def test_run_settings_give_the_sink_front_a_free_port(tmp_path: Path) -> None:
    """The e2e sinks start from an environment built from scratch: it names a free front port, never 8123."""
    import socket

    settings, env = run_settings(Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:1"), tmp_path)
    port = int(env["METERSTREAM_CLICKHOUSE_HTTP_PORT"])
    assert port != 8123 and settings.clickhouse_http_port == port
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free


def cli(env: dict[str, str], *args: str) -> str:
    """Run `meterstream ARGS` in its own process: embedded chdb lets one process own a store at a time."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "meterstream.deploy.cli", *args],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def query(env: dict[str, str], sql: str) -> list[list[str]]:
    return [line.split("\t") for line in cli(env, "query", sql).splitlines()[1:]]


def close(env: dict[str, str], out: Path) -> list[dict]:
    cli(env, "close", "--period", "2026-10", "--out", str(out), "--no-publish")
    return [orjson.loads(p.read_bytes()) for p in sorted(out.rglob("*.json"))]


def dead_letters(settings: Settings) -> list[dict]:
    from meterstream.ingest.lag import LagProbe

    topic = settings.topic("dead-letters")
    probe = LagProbe(settings)
    ends = probe.end_offsets(topic)
    probe.close()
    c = Consumer(
        {
            "bootstrap.servers": settings.bootstrap,
            "group.id": f"t-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in ends])
    out: list[dict] = []
    deadline = time.monotonic() + 30
    while len(out) < sum(ends.values()) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            out.append(orjson.loads(m.value()))
    c.close()
    return out


@pytest.mark.kafka
@pytest.mark.parametrize("engine", ["native", "faust"])
def test_events_to_invoices(kafka_settings: Settings, tmp_path: Path, engine: str) -> None:
    from meterstream.deploy.pipeline import Pipeline, wait_drained
    from meterstream.ingest.topics import ensure_topics
    from meterstream.processor.runner import app_id

    settings, env = run_settings(kafka_settings, tmp_path)
    env["METERSTREAM_PROCESSOR_ENGINE"] = engine
    ensure_topics(settings)
    stream = VALID[:6] + MALFORMED[:2] + DUPLICATES[:1] + VALID[6:] + UNRATABLE + DUPLICATES[1:] + MALFORMED[2:]
    pipeline = Pipeline(env, tmp_path / "logs")
    try:
        pipeline.start("processor")
        pipeline.start("sink")
        produce(settings, stream)
        wait_drained(settings, pipeline, app_id(settings), len(stream), timeout=180)
        pipeline.stop("processor")
        assert pipeline.stop("sink") == 0
    finally:
        pipeline.stop_all()

    # every refused message is in the dead-letter topic, with its reason and original bytes
    dls = dead_letters(settings)
    assert sorted(d["raw"].encode() for d in dls) == sorted(MALFORMED + UNRATABLE)
    by_raw = {d["raw"].encode(): d for d in dls}
    assert by_raw[MALFORMED[1]]["field"] == "customer"
    assert by_raw[MALFORMED[2]]["field"] == "quantity"
    assert by_raw[UNRATABLE[0]]["stage"] == "rate"

    out = tmp_path / "invoices"
    first = close(env, out)
    got = {(d["tenant"], d["customer"]): Decimal(d["total"]) for d in first}
    assert got == EXPECTED

    raw = orjson.loads(_yaml(DATA / "catalog.yaml"))
    plans = {p["id"]: p for p in raw["plans"]}
    quantities = {
        ("t1", "c1", "api_calls"): "113",
        ("t1", "c1", "storage_gb_hours"): "1250.75",
        ("t1", "c2", "api_calls"): "10",
        ("t1", "big", "api_calls"): "110",
        ("t1", "big", "voice_seconds"): "120",
        ("t2", "x", "api_calls"): "100",
    }
    plan_of = {("t1", "c1"): "basic", ("t1", "c2"): "basic", ("t1", "big"): "bulk", ("t2", "x"): "bulk"}
    # the streaming deltas of each meter, summed (the invoice document, version 2, does not repeat them)
    streamed = {
        (t, c, m): Decimal(a) for t, c, m, a in query(
            env, f"SELECT tenant, customer, meter, sum(amount) FROM {settings.clickhouse_database}.rated_usage "
                 "FINAL GROUP BY tenant, customer, meter")
    }  # fmt: skip
    for doc in first:
        assert doc["status"] == "finalized" and doc["number"]
        lines = {line["code"]: line for line in doc["lines"]}
        assert sum(Decimal(line["amount"]) for line in doc["lines"]) == Decimal(doc["total"])
        for (t, c, meter), q in quantities.items():
            if (t, c) == (doc["tenant"], doc["customer"]):
                price = plans[plan_of[(t, c)]]["meters"][meter]
                ref = reference_total(price, Decimal(q)).quantize(Decimal("0.01"), ROUND_HALF_UP)
                assert Decimal(lines[meter]["quantity"]) == Decimal(q)
                assert Decimal(lines[meter]["amount"]) == ref
                # the streaming deltas reconcile with the invoice
                assert streamed[(t, c, meter)] == Decimal(lines[meter]["precise_amount"])

    # closing again: identical documents, no duplicate rows
    files = {p: p.read_bytes() for p in out.rglob("*.json")}
    assert close(env, out) == first
    assert {p: p.read_bytes() for p in out.rglob("*.json")} == files
    db = settings.clickhouse_database
    assert query(env, f"SELECT count() FROM {db}.invoices FINAL") == [[str(len(EXPECTED))]]
    assert query(env, f"SELECT count() FROM {db}.rated_usage FINAL") == [[str(len(VALID))]]
    daily = query(env, f"SELECT sum(quantity) FROM {db}.usage_daily WHERE customer = 'c1' AND meter = 'api_calls'")
    assert Decimal(daily[0][0]) == Decimal("113")


def _yaml(path: Path) -> bytes:
    import yaml

    return orjson.dumps(yaml.safe_load(path.read_text()))


@pytest.mark.kafka
def test_kill_and_restart_processor_and_sink_loses_nothing(kafka_settings: Settings, tmp_path: Path) -> None:
    """SIGKILL both processes mid-stream, restart them: quantities still match the input exactly."""
    from meterstream.deploy.pipeline import Pipeline, wait_drained
    from meterstream.ingest.lag import LagProbe
    from meterstream.ingest.topics import ensure_topics
    from meterstream.ingest.workload import Truth, WorkloadSpec, generate
    from meterstream.processor.runner import app_id

    settings, env = run_settings(kafka_settings, tmp_path)
    env["METERSTREAM_CATALOG"] = str(Path(__file__).resolve().parents[2] / "deploy" / "demo_catalog.yaml")
    settings = settings.model_copy(update={"catalog": Path(env["METERSTREAM_CATALOG"])})
    ensure_topics(settings)
    truth = Truth()
    events = list(generate(WorkloadSpec(events=6000, period="2026-10", run_id="kill"), truth))
    pipeline = Pipeline(env, tmp_path / "logs")
    probe = LagProbe(settings)
    try:
        pipeline.start("processor")
        pipeline.start("sink")
        from meterstream.ingest.producer import make_producer, produce_all

        # Half the events first; once the processor has rated some of them (the rated topic is packed, so
        # count messages, not records), kill both while the other half is still being produced.
        half = len(events) // 2
        produce_all(make_producer(settings), settings.topic("usage-events"), iter(events[:half]))
        deadline = time.monotonic() + 120
        while probe.count(settings.topic("rated-usage")) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert probe.count(settings.topic("rated-usage")) >= 1, "the processor rated nothing within 120 s"
        rest = threading.Thread(
            target=produce_all, args=(make_producer(settings), settings.topic("usage-events"), iter(events[half:]))
        )
        rest.start()
        time.sleep(0.3)
        pipeline.stop("processor", sig=signal.SIGKILL)
        pipeline.stop("sink", sig=signal.SIGKILL)
        rest.join()
        pipeline.start("processor")
        pipeline.start("sink")
        wait_drained(settings, pipeline, app_id(settings), len(events), timeout=240)
        pipeline.stop("processor")
        pipeline.stop("sink")
    finally:
        probe.close()
        pipeline.stop_all()
    db = settings.clickhouse_database
    rows = query(
        env,
        f"SELECT tenant, customer, meter, sum(quantity), count() FROM {db}.rated_usage FINAL GROUP BY ALL",
    )
    got = {(t, c, m): Decimal(q) for t, c, m, q, _ in rows}
    assert got == dict(truth.quantities)
    assert sum(int(n) for *_, n in rows) == truth.accepted
    dl = query(env, f"SELECT uniqExact(topic, partition, offset) FROM {db}.dead_letters")
    assert int(dl[0][0]) == truth.malformed + truth.unratable
