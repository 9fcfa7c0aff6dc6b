"""meterstream/collector.py: what `meterstream serve` and bench/authorize.py set once start-up is done."""

import gc

from meterstream.collector import BetweenBatches, settle_after_start


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


def test_a_batch_loop_collects_between_batches_only() -> None:
    """The processor's loop (processor/runner.py): automatic collection off once settled; `tick` collects the young
    generation after `young_s` seconds, every generation after `full_s`, nothing before; `restore` turns it on."""
    now = [100.0]
    collector = BetweenBatches(young_s=1.0, full_s=60.0, clock=lambda: now[0])
    collector.tick()  # not settled yet: nothing
    assert collector.collections == [0, 0]
    assert gc.isenabled()
    try:
        collector.settle()
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0
        collector.tick()
        now[0] += 0.5
        collector.tick()
        assert collector.collections == [0, 0]  # under a second
        now[0] += 0.6
        gc.set_debug(0)
        garbage = [object()]
        garbage.append(garbage)  # a cycle: freed only by a collection
        probe = weakref_to(garbage)
        del garbage
        collector.tick()  # 1.1 s after settling: a young collection
        assert collector.collections == [1, 0]
        assert probe() is None
        for _ in range(58):
            now[0] += 1.0
            collector.tick()
        assert collector.collections == [59, 0]
        now[0] += 1.0  # 60.1 s after settling: a full collection, and the young clock restarts with it
        collector.tick()
        assert collector.collections == [59, 1]
        now[0] += 0.5
        collector.tick()
        assert collector.collections == [59, 1]
        assert not gc.isenabled()
    finally:
        collector.restore()
        gc.unfreeze()
    assert gc.isenabled()


def weakref_to(value: list) -> object:
    """A weak reference to a list (lists take none): to a subclass instance held inside it."""
    import weakref

    class Marker:
        pass

    marker = Marker()
    value.append(marker)
    return weakref.ref(marker)
