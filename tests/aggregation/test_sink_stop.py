"""SIGTERM stops the sink within 10 s even while every insert fails, losing and duplicating nothing (#12).

The sink runs as its own process (`python -m meterstream.deploy.cli sink`), on a real broker, with the
fault file (`METERSTREAM_SINK_FAULT_FILE`: inserts fail while it exists) and its own embedded store.
The store is read afterwards by another process (chdb: one process per data path, and this test
process may already hold one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest

from meterstream.deploy.ports import free_port
from meterstream.ingest.lag import LagProbe
from meterstream.ingest.producer import make_producer
from meterstream.ingest.topics import ensure_topics
from meterstream.schemas.settings import Settings, settings_from_env

pytestmark = pytest.mark.kafka

RECORD = {
    "tenant": "cloudco", "customer": "org-7", "subject": "", "meter": "api_calls",
    "time": "2026-10-12T10:11:12.345Z", "period": "2026-10", "quantity": "1", "amount": "0.1",
    "cumulative": "1", "currency": "USD", "plan": "p", "line": "api_calls", "dimensions": {},
    "source": "", "src_partition": 0,
}  # fmt: skip


def healthz(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None  # not listening yet


def produce(settings: Settings, first: int, count: int, per_message: int = 5) -> None:
    producer = make_producer(settings)
    topic = settings.topic("rated-usage")
    for start in range(first, first + count, per_message):
        lines = [orjson.dumps({**RECORD, "id": f"e{i}", "src_offset": i}) for i in range(start, start + per_message)]
        producer.produce(topic, b"\n".join(lines), partition=start // per_message % settings.partitions)
    assert producer.flush(30) == 0


def wait_for(what, timeout: float = 60.0, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(every)
    return bool(what())


def test_sigterm_while_inserts_fail_exits_in_10s_and_a_restart_lands_everything_once(kafka_settings, tmp_path) -> None:
    fault = tmp_path / "clickhouse-down"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update(
        {
            "METERSTREAM_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
            "METERSTREAM_HOME": str(tmp_path),
            "METERSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
            "METERSTREAM_TOPIC_PREFIX": f"stop{uuid.uuid4().hex[:8]}.",
            "METERSTREAM_PARTITIONS": "2",
            "METERSTREAM_SINK_METRICS_PORT": str(port),
            "METERSTREAM_SINK_FAULT_FILE": str(fault),
            "METERSTREAM_SINK_BATCH_SECONDS": "0.2",
        }
    )
    settings = settings_from_env(env)
    ensure_topics(settings)
    group = settings.topic("meterstream-sink")
    topics = [settings.topic("rated-usage"), settings.topic("dead-letters")]
    probe = LagProbe(settings)
    log = open(tmp_path / "sink.log", "ab")  # closed in finally

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "meterstream.deploy.cli", "sink"], env=env, stdout=log, stderr=log
        )

    def stop(proc: subprocess.Popen) -> float:
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return time.monotonic() - t0

    sink = start()
    try:
        # phase 1: 20 records land while ClickHouse is up
        produce(settings, 0, 20)
        assert wait_for(lambda: probe.group_lag(group, topics) == 0), "the sink did not insert the first records"
        assert healthz(port) == 200
        # phase 2: ClickHouse goes away; 30 more records cannot be inserted; /healthz says so
        fault.touch()
        produce(settings, 20, 30)
        assert wait_for(lambda: healthz(port) == 503, timeout=30)
        time.sleep(3)  # several failed attempts: the retry backoff has grown
        assert sink.poll() is None
        took = stop(sink)
        assert took <= 10.0, f"the sink took {took:.1f}s to stop after SIGTERM while inserts failed"
        assert sink.returncode == 0
        assert probe.group_lag(group, topics) == 30 // 5  # the 6 messages of phase 2: not committed

        # phase 3: ClickHouse is back; a new sink reads the uncommitted messages again
        fault.unlink()
        sink = start()
        assert wait_for(lambda: probe.group_lag(group, topics) == 0), "the restarted sink did not catch up"
        took = stop(sink)
        assert took <= 10.0 and sink.returncode == 0
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
        probe.close()
        log.close()

    db = settings.clickhouse_database
    read = (
        "import orjson, sys; from meterstream.aggregation.client import connect; "
        f"c = connect(dsn={settings.clickhouse_dsn!r}); "
        f"print(orjson.dumps([c.command('SELECT count() FROM {db}.rated_usage'), "
        f"c.command('SELECT uniqExact(event_id) FROM {db}.rated_usage'), "
        f"c.command('SELECT count() FROM {db}.rated_usage FINAL'), "
        f"c.command('SELECT toString(sum(quantity)) FROM {db}.rated_usage FINAL')]).decode())"
    )
    out = subprocess.run([sys.executable, "-c", read], env=env, capture_output=True, timeout=120, check=True)
    raw_rows, distinct, final_rows, quantity = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert (raw_rows, distinct, final_rows) == (50, 50, 50)  # every record once, even before merges
    assert str(quantity) == "50"  # 50 records of quantity 1
    assert Path(tmp_path / "sink.log").read_text(errors="replace").count("they will be read again") >= 1
