"""A customer's usage on another partition than its key's is reported (counted once, logged), not hidden.

Its running totals and wallet live in the state of its key's partition (librdkafka's default partitioner:
CRC-32 of `tenant/customer` modulo the partition count, docs/events.md); events produced with another
partitioner or to a chosen partition would be rated against a second set of totals. The expected
partitions below come from zlib's CRC-32, the partitioner's published definition, not from our code.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY

from meterstream.processor.columnar import ColumnarStep, Message
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.rating.catalog import parse_catalog

NOW = 1_793_577_600_000  # 2026-11-02T00:00:00Z
PARTITIONS = 4
CATALOG = parse_catalog(
    {
        "version": 1,
        "plans": [{"id": "p", "currency": "USD", "meters": {"calls": {"model": "unit", "unit_amount": "0.5"}}}],
        "assignments": [{"tenant": "t", "customer": "*", "plan": "p"}],
    }
)
METRIC = "meterstream_processor_misrouted_customers_total"


def home(customer: str) -> int:
    return zlib.crc32(f"t/{customer}".encode()) % PARTITIONS


def event(i: int, customer: str) -> bytes:
    return orjson.dumps(
        {"id": f"{customer}-{i}", "tenant": "t", "customer": customer, "meter": "calls", "quantity": "2",
         "time": "2026-11-01T10:00:00.000Z"}
    )  # fmt: skip


def misrouted_total() -> float:
    return REGISTRY.get_sample_value(METRIC) or 0.0


@pytest.fixture
def stores(tmp_path: Path):
    opened = {p: PartitionStore(tmp_path / f"p{p}") for p in range(PARTITIONS)}
    yield opened
    for store in opened.values():
        store.close()


def run(step: ColumnarStep, stores: dict, sent: list[tuple[int, str]], first: int = 0) -> int:
    """Events (partition, customer) in one batch; returns how many were rated."""
    msgs = [Message(p, first + i, f"t/{c}".encode(), event(first + i, c)) for i, (p, c) in enumerate(sent)]
    states = {p: BatchState(stores[p]) for p, _ in sent}
    out = step.run(states, msgs, NOW)
    for p, state in states.items():
        state.commit(out.last[p] + 1, out.outcomes[p])
    return sum(len(rows) for rows in out.rated.values())


def step_checking() -> ColumnarStep:
    step = ColumnarStep(CATALOG, "usage-events", 35 * 86_400_000)
    step.partitions = PARTITIONS
    return step


def test_events_on_their_keys_partition_are_not_reported(stores, caplog) -> None:
    step, before = step_checking(), misrouted_total()
    customers = ["alpha", "bravo", "charlie", "delta"]
    with caplog.at_level(logging.WARNING, "meterstream.processor"):
        assert run(step, stores, [(home(c), c) for c in customers for _ in range(3)]) == 12
    assert step.misrouted == set()
    assert misrouted_total() == before
    assert "belongs on partition" not in caplog.text


def test_a_customer_on_another_partition_is_counted_once_and_logged_but_still_rated(stores, caplog) -> None:
    step, before = step_checking(), misrouted_total()
    wrong = (home("echo") + 1) % PARTITIONS
    with caplog.at_level(logging.WARNING, "meterstream.processor"):
        assert run(step, stores, [(wrong, "echo"), (wrong, "echo")]) == 2  # rated: never lost
        assert run(step, stores, [(wrong, "echo")], first=2) == 1  # a later batch: not counted again
    assert step.misrouted == {("t", "echo")}
    assert misrouted_total() == before + 1
    assert f"usage on partition {wrong}, but its key 't/echo' belongs on partition {home('echo')}" in caplog.text


def test_a_customer_split_over_two_partitions_is_reported(stores, caplog) -> None:
    step, before = step_checking(), misrouted_total()
    right = home("foxtrot")
    wrong = (right + 2) % PARTITIONS
    with caplog.at_level(logging.WARNING, "meterstream.processor"):
        assert run(step, stores, [(right, "foxtrot"), (wrong, "foxtrot"), (right, "foxtrot")]) == 3
    assert step.misrouted == {("t", "foxtrot")}
    assert misrouted_total() == before + 1
    assert f"usage on partition {wrong} and {right}" in caplog.text


def test_without_the_partition_count_nothing_is_checked(stores) -> None:
    step, before = ColumnarStep(CATALOG, "usage-events", 35 * 86_400_000), misrouted_total()
    wrong = (home("golf") + 1) % PARTITIONS
    assert run(step, stores, [(wrong, "golf")]) == 1
    assert step.misrouted == set() and misrouted_total() == before
