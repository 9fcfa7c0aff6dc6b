from meterstream.processor.dedup import Verdict, check, dedup_key, remember

DAY = 86_400_000


def test_first_then_duplicate_then_replay() -> None:
    store: dict = {}
    key = dedup_key("t", "e1")
    assert check(store, key, 0, 10, 0, 35 * DAY) == (Verdict.NEW, None)
    remember(store, key, 0, 10, 0, {"id": "e1"}, [])
    assert check(store, key, 0, 11, 1, 35 * DAY)[0] is Verdict.DUPLICATE
    assert check(store, key, 1, 10, 1, 35 * DAY)[0] is Verdict.DUPLICATE  # same offset, other partition
    verdict, seen = check(store, key, 0, 10, 2, 35 * DAY)
    assert verdict is Verdict.REPLAY and seen["r"] == {"id": "e1"}


def test_identity_is_tenant_and_id() -> None:
    assert dedup_key("a", "1") != dedup_key("b", "1")


def test_window_forgets_old_ids() -> None:
    store: dict = {}
    key = dedup_key("t", "e1")
    remember(store, key, 0, 1, 0, {}, [])
    assert check(store, key, 0, 2, 35 * DAY, 35 * DAY)[0] is Verdict.DUPLICATE
    assert check(store, key, 0, 2, 35 * DAY + 1, 35 * DAY)[0] is Verdict.NEW
