"""The commit order of processor/checkpoint.py: state is written only after Kafka acknowledged every
output of the batch, batches commit oldest first, and a failed delivery commits nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import KafkaException

from meterstream.processor.changelog import ChangelogWriter
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


class Delivered:
    """A delivery report's message: the partition and offset Kafka gave it."""

    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class LoggingProducer(FakeProducer):
    """FakeProducer whose changelog records get offsets, as a broker gives them (one log per partition)."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: dict[int, int] = {}

    def produce(self, topic, value, key, partition, on_delivery) -> None:
        self.sent.append((topic, value, partition))
        if topic == "changelog":
            offset = self.ends.get(partition, 0)
            self.ends[partition] = offset + 1
            msg = Delivered(partition, offset)
            self.waiting.append(lambda err, _msg, cb=on_delivery, m=msg: cb(err, m))
        else:
            self.waiting.append(on_delivery)


def test_the_changelog_round_trip_overlaps_the_next_batch(tmp_path: Path) -> None:
    """keep=2, as the processor runs: a batch's changelog records go as soon as its outputs are acknowledged,
    without waiting for them; its state is written only once they are acknowledged too, in order; the
    changelog never holds a batch whose outputs are not all acknowledged."""
    store = PartitionStore(tmp_path / "p0")
    producer, consumer = LoggingProducer(), FakeConsumer()
    cp = Checkpointer(producer, consumer, "usage", changelog=ChangelogWriter(producer, "changelog"))

    def logged() -> list[bytes]:
        return [v for t, v, _ in producer.sent if t == "changelog"]

    first = batch_of(store, "c|a", ["1", 4], last=4)
    cp.produce("rated", None, b"r1", 0, first)
    cp.produce("rated", None, b"r2", 0, first)
    cp.add(first)
    second = batch_of(store, "c|a", ["2", 9], last=9, after=first.states[0])
    cp.produce("rated", None, b"r3", 0, second)
    cp.add(second)
    producer.releasable = 1  # one of the first batch's two outputs: no changelog record may go yet
    cp.commit_delivered(keep=2)
    assert logged() == []
    producer.releasable = 1  # the first batch's outputs are all acknowledged
    cp.commit_delivered(keep=2)  # returns at once: two batches in flight, the first one's records travel
    assert logged() == [b'["1",4]', b'{"rated":1}', b"5"] and store.next_offset() is None
    third = batch_of(store, "c|a", ["3", 12], last=12, after=second.states[0])  # processed meanwhile
    assert third.states[0].after.pending == {"c|a": ["2", 9]}  # both uncommitted batches, the newer write
    cp.produce("rated", None, b"r4", 0, third)
    cp.add(third)
    producer.releasable = 1  # the second batch's output, acknowledged before the first's changelog records
    cp.commit_delivered(keep=3)
    assert store.next_offset() is None and len(logged()) == 3  # the second waits for the first to commit
    producer.releasable = 3  # the first batch's three changelog records
    cp.commit_delivered(keep=2)
    assert store.next_offset() == 5 and store.changelog_next() == 3 and store.get("c|a") == ["1", 4]
    assert logged()[3:] == [b'["2",9]', b'{"rated":2}', b"10"]  # the second's, once the first committed
    producer.releasable = 10
    cp.commit_delivered(keep=0)
    assert store.next_offset() == 13 and store.changelog_next() == 9 and store.get("c|a") == ["3", 12]
    assert consumer.commits == [[(0, 5)], [(0, 10)], [(0, 13)]] and store.counts == Counter({"rated": 3})
    store.close()


def test_a_failed_output_sends_no_changelog_record(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p0")
    producer, consumer = LoggingProducer(), FakeConsumer()
    cp = Checkpointer(producer, consumer, "usage", changelog=ChangelogWriter(producer, "changelog"))
    batch = batch_of(store, "c|a", ["1", 4], last=4)
    cp.produce("rated", None, b"r1", 0, batch)
    cp.add(batch)
    producer.fail, producer.releasable = True, 1
    with pytest.raises(KafkaException, match="broker down"):
        cp.commit_delivered(keep=2)
    assert [t for t, _, _ in producer.sent] == ["rated"] and store.next_offset() is None
    store.close()
