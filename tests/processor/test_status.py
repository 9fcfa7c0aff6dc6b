"""Processor health: work waiting (lag > 0) with no committed batch for `stall_seconds` is a stall (503)."""

from __future__ import annotations

import pytest

from meterstream.health import StallWatch
from meterstream.processor.metrics import ProcessorStatus


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_idle_without_lag_is_healthy_however_long() -> None:
    clock = FakeClock()
    s = ProcessorStatus(stall_seconds=30, clock=clock)
    s.committed(0, 100)
    s.watermarks(0, 0, 100)  # caught up
    clock.now += 3600
    ok, detail = s.health()
    assert ok and detail["lag"] == 0


def test_stalled_before_the_first_batch_is_degraded() -> None:
    """The bug: before its first commit the processor never reported a stall."""
    clock = FakeClock()
    s = ProcessorStatus(stall_seconds=30, clock=clock)
    s.committed(0, None)  # fresh partition: read from the beginning
    s.committed(1, 40)  # resumes at 40
    s.watermarks(0, 10, 25)  # 15 waiting (from the low watermark)
    s.watermarks(1, 0, 47)  # 7 waiting
    clock.now += 29
    assert s.health()[0] is True
    clock.now += 2  # 31 s without a committed batch
    ok, detail = s.health()
    assert not ok
    assert detail["lag"] == 22 and detail["seconds_stalled"] == 31.0 and detail["events"] == 0


def test_progress_keeps_it_healthy_and_a_stall_after_it_is_degraded() -> None:
    clock = FakeClock()
    s = ProcessorStatus(stall_seconds=30, clock=clock)
    s.committed(0, 0)
    s.watermarks(0, 0, 1000)
    for _ in range(10):  # a batch every 20 s: slow but moving
        clock.now += 20
        s.processed(50)
        s.committed(0, s.events)
        s.watermarks(0, 0, 1000)
        assert s.health()[0] is True
    clock.now += 30.5
    ok, detail = s.health()
    assert not ok and detail["lag"] == 500 and detail["events"] == 500


def test_work_arriving_after_a_long_idle_spell_is_not_a_stall_at_once() -> None:
    clock = FakeClock()
    s = ProcessorStatus(stall_seconds=30, clock=clock)
    s.committed(0, 0)
    s.watermarks(0, 0, 0)
    clock.now += 3600  # an hour of quiet
    s.watermarks(0, 0, 5)  # then 5 events arrive
    assert s.health()[0] is True
    clock.now += 31  # and are not processed
    assert s.health()[0] is False
    s.processed(5)
    s.committed(0, 5)
    s.watermarks(0, 0, 5)
    assert s.health() == (True, {"events": 5, "lag": 0, "seconds_stalled": 0.0})


def test_unknown_watermarks_are_ignored() -> None:
    clock = FakeClock()
    s = ProcessorStatus(stall_seconds=30, clock=clock)
    s.committed(0, None)
    s.watermarks(0, -1001, -1001)  # librdkafka before the first fetch
    clock.now += 100
    assert s.health()[0] is True and s.health()[1]["lag"] == 0


def test_a_revoked_partition_no_longer_counts() -> None:
    clock = FakeClock()
    w = StallWatch(10, clock)
    w.set_lag(("rated", 0), 5)
    clock.now += 11
    assert w.stalled()
    w.forget(("rated", 0))
    assert not w.stalled() and w.behind() == 0


def _healthz(port: int) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.kafka
def test_a_processor_blocked_in_its_first_batch_answers_503(kafka_settings, tmp_path, monkeypatch) -> None:
    """Real broker, real NativeProcessor thread whose batch step blocks: /healthz turns 503 after stall_seconds
    (the old status never did before the first committed batch), and 200 again once it moves."""
    import threading
    import time
    import uuid
    from pathlib import Path

    import orjson

    from meterstream.ingest.producer import make_producer
    from meterstream.ingest.topics import ensure_topics
    from meterstream.ops_http import serve_ops
    from meterstream.processor import runner
    from meterstream.rating.catalog import load_catalog
    from meterstream.schemas.settings import Settings

    settings = Settings(
        **{
            **kafka_settings.model_dump(),
            "home": tmp_path,
            "topic_prefix": f"st{uuid.uuid4().hex[:8]}.",
            "partitions": 2,
            "stall_seconds": 2.0,
        }
    )
    ensure_topics(settings)
    producer = make_producer(settings)
    for i in range(6):
        value = orjson.dumps(
            {"id": f"e{i}", "tenant": "t1", "customer": "c1", "meter": "api_calls", "quantity": "1",
             "time": "2026-10-05T00:00:00Z"}
        )  # fmt: skip
        producer.produce(settings.topic("usage-events"), value, b"t1/c1", partition=i % 2)
    assert producer.flush(30) == 0

    release = threading.Event()
    catalog = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")
    processor = runner.NativeProcessor(settings, catalog)
    real_step = processor.process_batch  # the batch step, whichever path (per message or columnar) it takes

    def blocking_step(msgs):
        release.wait(60)
        return real_step(msgs)

    monkeypatch.setattr(processor, "process_batch", blocking_step)
    server = serve_ops(0, health=processor.status.health)
    port = server.server_port
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert _healthz(port) == 200  # just started
        deadline = time.monotonic() + 30
        while _healthz(port) != 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _healthz(port) == 503
        # work waiting: the lag seen before the blocked batch, 3 or 6 (the first fetch may hold one partition's 3)
        assert processor.status.events == 0 and processor.status.watch.behind() in (3, 6)
        release.set()
        deadline = time.monotonic() + 30
        while _healthz(port) != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _healthz(port) == 200
        while processor.status.events < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processor.status.events == 6 and processor.status.watch.behind() == 0
    finally:
        release.set()
        stop.set()
        thread.join(30)
        server.shutdown()
    assert not thread.is_alive()


def test_a_metrics_port_in_use_is_named_with_the_setting_that_moves_it() -> None:
    """Before: `meterstream sink: error: OSError: [Errno 98] Address already in use`, naming no port."""
    import socket

    from meterstream.ops_http import serve_ops

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    try:
        with pytest.raises(OSError) as err:
            serve_ops(port, lambda: (True, {}), setting="METERSTREAM_SINK_METRICS_PORT")
    finally:
        held.close()
    assert str(err.value).endswith(f"metrics and health endpoint 127.0.0.1:{port}: Address already in use (another "
                                   "process has it: set METERSTREAM_SINK_METRICS_PORT to another port)")  # fmt: skip
