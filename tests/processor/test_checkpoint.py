"""The commit order of processor/checkpoint.py: state is written only after Kafka acknowledged every
output of the batch, batches commit oldest first, and a failed delivery commits nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import KafkaException

from meterstream.processor.checkpoint import Checkpointer, InFlight
from meterstream.processor.store import BatchState, PartitionStore


class FakeProducer:
    """Holds delivery callbacks until `ack` releases them (as librdkafka would on poll)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, int]] = []
        self.waiting: list = []
        self.releasable = 0
        self.fail = False

    def produce(self, topic, value, key, partition, on_delivery) -> None:
        self.sent.append((topic, value, partition))
        self.waiting.append(on_delivery)

    def poll(self, timeout: float) -> int:
        n = 0
        while self.releasable and self.waiting:
            cb = self.waiting.pop(0)
            cb("broker down" if self.fail else None, None)
            self.releasable -= 1
            n += 1
        return n


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[list[tuple[int, int]]] = []

    def commit(self, offsets, asynchronous: bool) -> None:
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])


def batch_of(store: PartitionStore, key: str, value: object, last: int, after: BatchState | None = None):
    batch = InFlight(0.0, 1)
    state = BatchState(store, after)
    state[key] = value
    batch.states[0], batch.last[0], batch.outcomes[0] = state, last, Counter({"rated": 1})
    return batch


def test_state_waits_for_acks_and_batches_commit_in_order(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p0")
    producer, consumer = FakeProducer(), FakeConsumer()
    done: list[int] = []
    cp = Checkpointer(producer, consumer, "usage", lambda b: done.append(b.last[0]))
    first = batch_of(store, "c|a", ["1", 4], last=4)
    cp.produce("rated", None, b"r1", 0, first)
    cp.produce("rated", None, b"r2", 0, first)
    cp.add(first)
    second = batch_of(store, "c|a", ["2", 9], last=9, after=first.states[0])
    cp.produce("rated", None, b"r3", 0, second)
    cp.add(second)
    cp.commit_delivered(keep=2)  # nothing acknowledged yet: nothing written
    assert store.next_offset() is None and store.get("c|a") is None and consumer.commits == []
    producer.releasable = 1  # one of the first batch's two outputs
    cp.commit_delivered(keep=2)
    assert store.next_offset() is None
    producer.releasable = 2  # the rest of the first batch and the second batch's output
    cp.commit_delivered(keep=0)
    assert store.next_offset() == 10 and store.get("c|a") == ["2", 9]
    assert consumer.commits == [[(0, 5)], [(0, 10)]] and done == [4, 9]
    assert store.counts == Counter({"rated": 2})
    store.close()


def test_failed_delivery_commits_nothing(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p0")
    producer, consumer = FakeProducer(), FakeConsumer()
    cp = Checkpointer(producer, consumer, "usage")
    batch = batch_of(store, "c|a", ["1", 4], last=4)
    cp.produce("rated", None, b"r1", 0, batch)
    cp.add(batch)
    producer.fail, producer.releasable = True, 1
    with pytest.raises(KafkaException, match="broker down"):
        cp.commit_delivered(keep=0)
    assert store.next_offset() is None and store.get("c|a") is None and consumer.commits == []
    store.close()


def test_a_lost_group_commit_is_repeated_with_the_newest_offsets(tmp_path: Path) -> None:
    """The group commit is asynchronous: one lost while the broker restarts (after the last batch of a
    burst) must not leave the group behind for good — tools such as the chaos run wait for it."""
    store = PartitionStore(tmp_path / "p0")
    producer, consumer = FakeProducer(), FakeConsumer()
    cp = Checkpointer(producer, consumer, "usage")
    cp.refresh_group_offsets(1_000.0)
    assert consumer.commits == []  # nothing committed yet: nothing to repeat
    batch = batch_of(store, "c|a", ["1", 7], last=7)
    cp.produce("rated", None, b"r", 0, batch)
    cp.add(batch)
    producer.releasable = 1
    cp.commit_delivered(keep=0)
    assert consumer.commits == [[(0, 8)]]  # step 4, once; suppose the broker lost it
    sent_at = cp.group_committed_at
    cp.refresh_group_offsets(sent_at + cp.GROUP_REFRESH_S / 2)
    assert consumer.commits == [[(0, 8)]]  # not yet
    cp.refresh_group_offsets(sent_at + cp.GROUP_REFRESH_S)
    assert consumer.commits == [[(0, 8)], [(0, 8)]]  # repeated, with the newest offset
    store.close()
