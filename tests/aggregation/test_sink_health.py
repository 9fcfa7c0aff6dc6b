"""Sink health: red while inserts fail, and red on a stall (lag > 0, no commit for `stall_seconds`) (#12)."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
import uuid

import orjson
import pytest

from meterstream.aggregation.sink import SinkState


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def test_failing_inserts_are_red_at_once() -> None:
    state = SinkState(stall_seconds=30, clock=FakeClock())
    assert state.health()[0] is True
    state.degraded, state.last_error = True, "ClickHouse unavailable"
    ok, detail = state.health()
    assert not ok and detail["inserts_failing"] is True and detail["last_error"] == "ClickHouse unavailable"


def test_lag_without_a_commit_for_stall_seconds_is_red() -> None:
    clock = FakeClock()
    state = SinkState(stall_seconds=30, clock=clock)
    state.watch.set_lag(("rated-usage", 0), 12)
    state.watch.set_lag(("dead-letters", 0), 0)
    clock.now += 30
    assert state.health()[0] is True  # not more than 30 s yet
    clock.now += 0.5
    ok, detail = state.health()
    assert not ok and detail["lag"] == 12 and detail["seconds_stalled"] == 30.5 and not detail["inserts_failing"]
    state.watch.progressed()  # a commit
    assert state.health()[0] is True


def test_an_idle_sink_with_nothing_waiting_stays_green() -> None:
    clock = FakeClock()
    state = SinkState(stall_seconds=30, clock=clock)
    state.watch.set_lag(("rated-usage", 0), 0)
    clock.now += 86_400
    assert state.health()[0] is True


def _healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


@pytest.mark.kafka
def test_a_sink_stuck_in_an_insert_answers_503(chdb_client, kafka_settings, monkeypatch) -> None:
    """Real broker and chdb: an insert that hangs (no error, so not 'degraded') turns /healthz red after
    stall_seconds, because rated usage waits in Kafka; it turns green again once the insert returns."""
    from meterstream.aggregation import sink as sink_module
    from meterstream.aggregation.ddl import create_schema
    from meterstream.ingest.producer import make_producer
    from meterstream.ingest.topics import ensure_topics
    from meterstream.ops_http import serve_ops
    from meterstream.schemas.settings import Settings

    db = f"h_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    settings = Settings(
        **{
            **kafka_settings.model_dump(),
            "clickhouse_database": db,
            "topic_prefix": f"{db}.",
            "partitions": 1,
            "stall_seconds": 2.0,
            "sink_batch_seconds": 0.1,
        }
    )
    ensure_topics(settings)
    record = {
        "tenant": "t", "id": "e1", "customer": "c", "subject": "", "meter": "m", "time": "2026-10-01T00:00:00Z",
        "period": "2026-10", "quantity": "1", "amount": "1", "cumulative": "1", "currency": "EUR", "plan": "p",
        "line": "m", "dimensions": {}, "source": "", "src_partition": 0, "src_offset": 0,
    }  # fmt: skip
    producer = make_producer(settings)
    producer.produce(settings.topic("rated-usage"), orjson.dumps(record), partition=0)
    assert producer.flush(30) == 0

    release = threading.Event()
    real_insert = sink_module.insert_records

    def stuck_insert(*args, **kwargs):
        release.wait(60)
        return real_insert(*args, **kwargs)

    monkeypatch.setattr(sink_module, "insert_records", stuck_insert)
    sink = sink_module.ClickHouseSink(settings, chdb_client)
    server = serve_ops(0, health=sink.state.health)
    stop = threading.Event()
    runner = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while _healthz(server.server_port)[0] != 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        code, detail = _healthz(server.server_port)
        assert code == 503 and detail["lag"] == 1 and detail["inserts_failing"] is False
        release.set()
        while _healthz(server.server_port)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        code, detail = _healthz(server.server_port)
        assert code == 200 and detail["lag"] == 0 and detail["rows_inserted"] == 1
    finally:
        release.set()
        stop.set()
        runner.join(30)
        server.shutdown()
    assert not runner.is_alive()
    assert chdb_client.command(f"SELECT count() FROM {db}.rated_usage FINAL") == 1
