import time

from meterstream.processor.metrics import ProcessorStatus


def test_idle_without_lag_is_healthy() -> None:
    s = ProcessorStatus()
    assert s.health()[0] is True
    s.processed(3)
    s.last_event = time.time() - 3600
    assert s.health() == (True, {"events": 3, "lag": 0, "seconds_since_event": s.health()[1]["seconds_since_event"]})


def test_lag_with_no_progress_is_degraded() -> None:
    s = ProcessorStatus()
    s.processed(10)
    s.set_lag(0, 5)
    assert s.health()[0] is True  # just moved
    s.last_event = time.time() - 31
    ok, detail = s.health()
    assert not ok and detail["lag"] == 5
