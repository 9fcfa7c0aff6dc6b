"""The faust engine forgets dedup entries older than the window, like the native store's purge_before."""

from __future__ import annotations

import pytest

pytest.importorskip("faust")

from meterstream.processor.dedup import dedup_key
from meterstream.processor.faust_engine import DedupPurger, expired_dedup_keys

DAY = 86_400_000
WINDOW = 35 * DAY
NOW = 20_000 * DAY + 5 * 3_600_000  # day 20,000 (2024-10-04), 05:00 UTC; cutoff day 19,965


def _entry(partition: int, day: int, ms: int = 0) -> dict:
    return {"p": partition, "o": 1, "t": day * DAY + ms}


def _state() -> dict:
    return {
        dedup_key("t", "old"): _entry(0, 19_964, DAY - 1),  # last ms of the day before the cutoff day: expired
        dedup_key("t", "edge"): _entry(0, 19_965),  # first ms of the cutoff day: kept
        dedup_key("t", "new"): _entry(0, 19_999),
        dedup_key("t", "other-partition"): _entry(1, 19_000),  # expired, but partition 1 holds it
        "c|t\x1fc\x1fm\x1f2024-01": ["5", 9],  # running totals are never purged
        "b|t\x1fc\x1f2024-01": [{"b": "1"}, 9],
    }


def test_expired_keys_are_those_of_the_partition_first_seen_before_the_cutoff_day() -> None:
    assert expired_dedup_keys(_state().items(), 0, 19_965) == [dedup_key("t", "old")]
    assert expired_dedup_keys(_state().items(), 1, 19_965) == [dedup_key("t", "other-partition")]
    assert expired_dedup_keys(_state().items(), 1, 19_000) == []


def test_purger_deletes_at_start_then_only_when_the_cutoff_day_moves() -> None:
    state = _state()
    purger = DedupPurger(WINDOW)
    assert purger.purge(state, 0, NOW) == 1
    assert dedup_key("t", "old") not in state and dedup_key("t", "edge") in state
    assert dedup_key("t", "other-partition") in state and "c|t\x1fc\x1fm\x1f2024-01" in state
    state[dedup_key("t", "late")] = _entry(0, 1)  # would be expired, but the day has not changed: no rescan
    assert purger.purge(state, 0, NOW + 3_600_000) == 0
    assert dedup_key("t", "late") in state
    assert purger.purge(state, 1, NOW) == 1  # partition 1's first message purges partition 1
    assert dedup_key("t", "other-partition") not in state
    assert purger.purge(state, 0, NOW + DAY) == 2  # next day: cutoff 19,966 takes "late" and "edge"
    assert set(state) == {dedup_key("t", "new"), "c|t\x1fc\x1fm\x1f2024-01", "b|t\x1fc\x1f2024-01"}


def test_output_entries_are_purged_with_the_dedup_entries_of_their_age() -> None:
    state = {
        "f|0|7": {"p": 0, "t": 19_964 * DAY + DAY - 1, "r": {"id": "old"}, "w": []},  # before the cutoff day
        "f|0|8": {"p": 0, "t": 19_965 * DAY, "r": {"id": "edge"}, "w": []},  # first ms of the cutoff day: kept
        "f|1|7": {"p": 1, "t": 19_000 * DAY, "r": {"id": "other"}, "w": []},  # partition 1's
    }
    assert expired_dedup_keys(state.items(), 0, 19_965) == ["f|0|7"]
    assert DedupPurger(WINDOW).purge(state, 0, NOW) == 1
    assert set(state) == {"f|0|8", "f|1|7"}
