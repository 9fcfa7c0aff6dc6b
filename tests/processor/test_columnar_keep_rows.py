"""The runner produces only the packed rated messages, so its step frees each chunk's rows once they are packed
(`ColumnarStep.keep_rows = False`), unless prepaid balances will debit them after the batch."""

from __future__ import annotations

import orjson

from meterstream.processor.columnar import ColumnarStep, Message
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.rating.catalog import parse_catalog
from meterstream.schemas.rated import RowPacker, unpack

NOW = 1_793_577_600_000  # 2026-11-02T00:00:00Z
CATALOG = parse_catalog(
    {
        "version": 1,
        "plans": [{"id": "p", "currency": "USD", "meters": {"calls": {"model": "unit", "unit_amount": "0.5"}}}],
        "assignments": [{"tenant": "t", "customer": "*", "plan": "p"}],
    }
)
BAD = b'{"id": "x", "tenant": "t", "customer": "c", "meter": "calls", "quantity": "-1"}'


def messages(n: int) -> list[Message]:
    out = [
        Message(0, i, b"t/c", orjson.dumps({"id": f"e{i}", "tenant": "t", "customer": "c", "meter": "calls",
                                            "quantity": "2", "time": "2026-11-01T10:00:00.000Z"}), NOW - 1_000)
        for i in range(n)
    ]  # fmt: skip
    out.insert(3, Message(0, n, b"t/c", BAD, NOW - 1_000))  # a dead letter among them (the specification's path)
    return out


class Watching:
    """Balances stand-in: whether any customer is watched, and what `after_batch` is given."""

    def __init__(self, watched: bool) -> None:
        self.watched, self.given = watched, None

    def observe_partition(self, p, timestamps) -> None:
        pass

    def needs_rows(self) -> bool:
        return self.watched

    def after_batch(self, states, rated, last, now_ms):
        self.given = {p: len(rows) for p, rows in rated.items()}
        return []


def run(tmp_path, keep_rows: bool, balances=None):
    step = ColumnarStep(CATALOG, "usage", 35 * 86_400_000)
    step.pack, step.keep_rows, step.chunk, step.balances = RowPacker, keep_rows, 4, balances
    store = PartitionStore(tmp_path / "p0")
    try:
        out = step.run({0: BatchState(store)}, messages(10), NOW)
    finally:
        store.close()
    packed = [r for value in out.messages[0] for r in unpack(value)]
    return out, packed


def test_rows_go_once_packed_when_nothing_debits_them(tmp_path) -> None:
    out, packed = run(tmp_path, keep_rows=False)
    assert out.rated[0] == []
    assert [r["id"] for r in packed] == [f"e{i}" for i in range(10)]  # every row still produced, in order
    assert {r["amount"] for r in packed} == {"1.0"}  # 2 calls x 0.5
    assert len(out.dead_letters) == 1 and out.outcomes[0] == {"rated": 10, "dead_letter": 1}


def test_rows_are_kept_for_the_caller_or_for_watched_balances(tmp_path) -> None:
    out, packed = run(tmp_path, keep_rows=True)
    assert len(out.rated[0]) == 10 and len(packed) == 10
    watching = Watching(True)
    out, packed = run(tmp_path / "w", keep_rows=False, balances=watching)
    assert len(out.rated[0]) == 10 and watching.given == {0: 10}
    idle = Watching(False)
    out, packed = run(tmp_path / "i", keep_rows=False, balances=idle)
    assert out.rated[0] == [] and idle.given == {0: 0} and len(packed) == 10
