"""How far a consumer group is behind: the pipeline is drained when every group's lag is zero."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from meterstream.schemas.settings import Settings

NOT_READY = {
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError._TIMED_OUT,
    # a (re)started broker: its partitions' leadership moving, or not answering for a moment
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
}


def coordinator_not_ready(exc: KafkaException) -> bool:
    """True for errors that pass once the broker is up again and its group coordinator and partition leaders are
    settled (right after a (re)start)."""
    err = exc.args[0] if exc.args else None
    return isinstance(err, KafkaError) and (err.retriable() or err.code() in NOT_READY)


class LagProbe:
    """Reads end offsets and committed offsets; keeps its clients open between calls.

    Committed offsets are read with a consumer of the group that never subscribes (an OffsetFetch, it
    does not join the group): librdkafka's admin ListConsumerGroupOffsets crashed the process here
    when the group coordinator was still loading.
    """

    def __init__(self, settings: Settings) -> None:
        self.conf = {"bootstrap.servers": settings.bootstrap, "enable.auto.commit": False}
        self.consumer = Consumer({**self.conf, "group.id": "meterstream-lag-probe"})
        self.groups: dict[str, Consumer] = {}

    def close(self) -> None:
        for c in [self.consumer, *self.groups.values()]:
            c.close()

    def end_offsets(self, topic: str) -> dict[int, int]:
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}

    def count(self, topic: str) -> int:
        """Messages in a topic (our topics are neither compacted nor trimmed locally)."""
        return sum(self.end_offsets(topic).values())

    def group_lag(self, group: str, topics: list[str]) -> int | None:
        """Messages in `topics` not yet committed by `group` (an uncommitted partition counts whole).

        None when the broker cannot tell yet: its group coordinator is still loading, or a partition's leader is
        moving (a restarted broker: `NOT_LEADER_FOR_PARTITION` from the end offsets) — any retriable error.
        """
        reader = self.groups.get(group)
        if reader is None:
            reader = self.groups[group] = Consumer({**self.conf, "group.id": group})
        try:
            ends = {(t, p): off for t in topics for p, off in self.end_offsets(t).items()}
            tps = reader.committed([TopicPartition(t, p) for (t, p) in ends], timeout=10)
        except KafkaException as exc:
            if coordinator_not_ready(exc):
                return None
            raise
        committed = {(tp.topic, tp.partition): tp.offset for tp in tps}
        lag = 0
        for tp, end in ends.items():
            done = committed.get(tp, -1)
            lag += end - done if done >= 0 else end
        return lag
