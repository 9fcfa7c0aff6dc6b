from meterstream.processor.dedup import Verdict, check, dedup_key, remember

DAY = 86_400_000


def test_first_then_duplicate_then_replay() -> None:
    store: dict = {}
    key = dedup_key("t", "e1")
    assert check(store, key, 0, 10, 0, 35 * DAY) == (Verdict.NEW, None)
    remember(store, key, 0, 10, 0)
    assert check(store, key, 0, 11, 1, 35 * DAY)[0] is Verdict.DUPLICATE
    assert check(store, key, 1, 10, 1, 35 * DAY)[0] is Verdict.DUPLICATE  # same offset, other partition
    verdict, seen = check(store, key, 0, 10, 2, 35 * DAY)
    assert verdict is Verdict.REPLAY and seen == {"p": 0, "o": 10, "t": 0}


def test_entry_is_position_and_time_only() -> None:
    """The shared entry is {"p", "o", "t"}: no engine's replay data (bytes per remembered id matter)."""
    store: dict = {}
    remember(store, dedup_key("t", "e1"), 3, 42, 1_700_000_000_000)
    assert store == {"d|t\x1fe1": {"p": 3, "o": 42, "t": 1_700_000_000_000}}


def test_identity_is_tenant_and_id() -> None:
    assert dedup_key("a", "1") != dedup_key("b", "1")


def test_window_forgets_old_ids() -> None:
    store: dict = {}
    key = dedup_key("t", "e1")
    remember(store, key, 0, 1, 0)
    assert check(store, key, 0, 2, 35 * DAY, 35 * DAY)[0] is Verdict.DUPLICATE
    assert check(store, key, 0, 2, 35 * DAY + 1, 35 * DAY)[0] is Verdict.NEW
