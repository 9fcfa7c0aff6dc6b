"""The processor's garbage-collection policy: off inside batches, a full collection on a clock between them."""

from __future__ import annotations

import gc
import weakref

from meterstream.processor.collector import Collector


class _Node:
    def __init__(self) -> None:
        self.other: object = None


def _cycle() -> weakref.ref:
    """A reference cycle nobody else holds: only the cyclic collector can free it."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_automatic_collection_is_off_once_warm_and_back_on_close() -> None:
    now = [0.0]
    collector = Collector(interval_s=30.0, clock=lambda: now[0])
    assert gc.isenabled()
    try:
        collector.warm_up()
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0  # what was alive after the first batch is frozen
    finally:
        collector.close()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_a_cycle_made_after_warm_up_is_freed_at_the_next_interval_not_before() -> None:
    now = [100.0]
    collector = Collector(interval_s=30.0, clock=lambda: now[0])
    try:
        collector.warm_up()
        ref = _cycle()
        for _ in range(10_000):  # allocations that would trigger automatic collections
            [[] for _ in range(10)]
        now[0] = 129.9
        collector.between_batches()
        assert ref() is not None, "collected before the interval: the automatic collector is still on"
        now[0] = 130.0
        collector.between_batches()
        assert ref() is None, "a garbage cycle survived the interval's full collection"
        assert collector.collections == 2  # warm-up's and the interval's
    finally:
        collector.close()
