"""A commit that fails after a successful insert is retried (merged with later offsets), so the group
never stays behind when no new record arrives: tools that wait for the group's lag would wait for ever."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from meterstream.aggregation.sink import ClickHouseSink, SinkState


class FlakyConsumer:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.committed: list[list[tuple[str, int, int]]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        if self.failures:
            self.failures -= 1
            raise KafkaException(KafkaError(KafkaError.NOT_COORDINATOR))
        self.committed.append(sorted((tp.topic, tp.partition, tp.offset) for tp in offsets))


def bare_sink(consumer: FlakyConsumer) -> ClickHouseSink:
    sink = ClickHouseSink.__new__(ClickHouseSink)  # only the commit bookkeeping is exercised
    sink.consumer, sink.committed, sink.uncommitted, sink.commit_retry_at = consumer, {}, [], 0.0
    sink.state = SinkState(stall_seconds=30)
    return sink


def test_a_failed_commit_is_kept_and_retried_with_the_newer_offsets() -> None:
    consumer = FlakyConsumer(failures=1)
    sink = bare_sink(consumer)
    sink._commit_offsets([TopicPartition("rated", 0, 10), TopicPartition("rated", 1, 4)])
    assert consumer.committed == [] and len(sink.uncommitted) == 2  # lost in the broker restart
    sink._commit_offsets([TopicPartition("rated", 0, 25)])  # the next batch, partition 0 only
    assert consumer.committed == [[("rated", 0, 25), ("rated", 1, 4)]]  # both partitions, newest offsets
    assert sink.uncommitted == [] and sink.committed == {("rated", 0): 25, ("rated", 1): 4}


def test_with_no_new_batch_the_loop_retries_the_kept_offsets() -> None:
    consumer = FlakyConsumer(failures=2)
    sink = bare_sink(consumer)
    sink._commit_offsets([TopicPartition("dead", 2, 7)])
    sink._commit_offsets([])  # the loop's retry: fails again, still kept
    assert consumer.committed == [] and [(tp.partition, tp.offset) for tp in sink.uncommitted] == [(2, 7)]
    sink._commit_offsets([])
    assert consumer.committed == [[("dead", 2, 7)]] and sink.uncommitted == []
