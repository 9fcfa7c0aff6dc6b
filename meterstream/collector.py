"""The garbage collector's settings for a long-running process, applied once its start-up is done.

A request of the HTTP API (a 1,000-event batch allocates ~10^5 objects) or a processor batch would otherwise
trigger the collector's full (generation 2) passes over every live object — the app, pydantic, SQLAlchemy, the
catalog — every few requests: milliseconds of pause that land on the tail latency. What start-up built is never
garbage, so it is frozen (`gc.freeze`: moved out of the collector's sight), and the young generation is collected
less often. `meterstream serve` applies this after building the app (so `bench/api.py`, which runs it, measures it), and
`bench/authorize.py`, which builds the app in its own process, applies it too.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)


def settle_after_start() -> None:
    """Collect once, freeze what survives (start-up's objects), and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 100)


__all__ = ["YOUNG_THRESHOLD", "settle_after_start"]
