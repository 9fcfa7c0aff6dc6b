"""The shared daemon-thread loop: start once, stop joins, a stopped loop starts again."""

from __future__ import annotations

import threading

from meterstream.background import BackgroundLoop


class Counter(BackgroundLoop):
    thread_name = "test-loop"

    def __init__(self) -> None:
        self._init_loop()
        self.runs = 0
        self.entered = threading.Event()

    def run(self) -> None:
        self.runs += 1
        self.entered.set()
        self._stop.wait()


def test_start_is_idempotent_and_stop_joins() -> None:
    loop = Counter()
    assert loop.start() is loop
    assert loop.entered.wait(5)
    thread = loop._thread
    assert thread is not None and thread.daemon and thread.name == "test-loop"
    loop.start()  # a second start while the thread lives starts nothing
    assert loop._thread is thread
    loop.stop(5)
    assert loop._thread is None and not thread.is_alive()
    assert loop.runs == 1


def test_a_stopped_loop_starts_again() -> None:
    loop = Counter()
    loop.start()
    assert loop.entered.wait(5)
    loop.stop(5)
    loop.entered.clear()
    loop.start()  # the stop event is cleared: the new thread does not exit at once
    assert loop.entered.wait(5)
    assert loop._thread is not None and loop._thread.is_alive()
    loop.stop(5)
    assert loop.runs == 2


def test_stop_before_start_is_harmless() -> None:
    loop = Counter()
    loop.stop(0.1)
    assert loop._thread is None and loop.runs == 0
