"""meterstream/collector.py: what `meterstream serve` and bench/authorize.py set once start-up is done."""

import gc

from meterstream.collector import settle_after_start


def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    built_at_start = [object() for _ in range(1000)]  # noqa: F841 (alive through the call: start-up's objects)
    try:
        settle_after_start()
        assert gc.get_threshold() == (50_000, 20, 100)  # CPython's default is (700, 10, 10)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
