"""The garbage collector's settings for a long-running process, applied once its start-up is done.

A request of the HTTP API (a 1,000-event batch allocates ~10^5 objects) or a processor batch would otherwise
trigger the collector's full (generation 2) passes over every live object — the app, pydantic, SQLAlchemy, the
catalog — every few requests: milliseconds of pause that land on the tail latency. What start-up built is never
garbage, so it is frozen (`gc.freeze`: moved out of the collector's sight), and the young generation is collected
less often. `meterstream serve` applies this after building the app (so `bench/api.py`, which runs it, measures it), and
`bench/authorize.py`, which builds the app in its own process, applies it too.

The stream processor goes further (`BetweenBatches`): its batches of 20,000 events keep ~70,000 new containers
alive while they run (rows, decoded events, running totals), so even at 50,000 allocations a young collection ran
inside every batch, traversing them, and the next batches' buffers behind them. A batch frees all it made by
reference counting alone (tests/processor/test_columnar_garbage.py holds it to that), so the automatic collector is
off there, and the loop collects between batches, where little is alive: the young generation every 5 seconds, all
of it every minute, which bounds whatever cyclic garbage a library or an error path leaves. (Each young collection
between batches took ~20 ms at ~55,000 events/s, the batches in flight being alive then: 2% of a processor's time
when it ran every second.)
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)


def settle_after_start() -> None:
    """Collect once, freeze what survives (start-up's objects), and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 100)


class BetweenBatches:
    """The collector of a batch loop: off while a batch runs, run by the loop between two (`tick`).

    `settle` (once start-up is done, after the first batch: the caches and modules it loaded are frozen with
    start-up's objects) collects, freezes and turns automatic collection off; `tick`, called by the loop at its
    quiet point, collects the young generation when `young_s` seconds have passed since the last collection, and
    every generation when `full_s` have. `restore` turns automatic collection back on (the loop ended)."""

    def __init__(self, young_s: float = 5.0, full_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.young_s, self.full_s, self.clock = young_s, full_s, clock
        self.settled = False
        self.young_at = self.full_at = 0.0
        self.collections = [0, 0]  # young, full (tests, logs)

    def settle(self) -> None:
        settle_after_start()
        gc.disable()
        self.settled = True
        self.young_at = self.full_at = self.clock()

    def tick(self) -> None:
        if not self.settled:
            return
        now = self.clock()
        if now - self.full_at >= self.full_s:
            gc.collect()
            self.full_at = self.young_at = now
            self.collections[1] += 1
        elif now - self.young_at >= self.young_s:
            gc.collect(0)
            self.young_at = now
            self.collections[0] += 1

    def restore(self) -> None:
        if self.settled:
            gc.enable()
            self.settled = False


__all__ = ["YOUNG_THRESHOLD", "BetweenBatches", "settle_after_start"]
