"""How far a consumer group is behind: the pipeline is drained when every group's lag is zero."""

from __future__ import annotations

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas.settings import Settings


class LagProbe:
    """Reads end offsets and committed offsets; keeps its clients open between calls."""

    def __init__(self, settings: Settings) -> None:
        conf = {"bootstrap.servers": settings.bootstrap}
        self.admin = AdminClient(conf)
        self.consumer = Consumer({**conf, "group.id": "meterstream-lag-probe", "enable.auto.commit": False})

    def close(self) -> None:
        self.consumer.close()

    def end_offsets(self, topic: str) -> dict[int, int]:
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}

    def count(self, topic: str) -> int:
        """Messages in a topic (our topics are neither compacted nor trimmed locally)."""
        return sum(self.end_offsets(topic).values())

    def group_lag(self, group: str, topics: list[str]) -> int:
        """Messages in `topics` not yet committed by `group` (an uncommitted partition counts whole)."""
        ends = {(t, p): off for t in topics for p, off in self.end_offsets(t).items()}
        req = [ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for (t, p) in ends])]
        committed: dict[tuple[str, int], int] = {}
        for fut in self.admin.list_consumer_group_offsets(req).values():
            for tp in fut.result().topic_partitions:
                committed[(tp.topic, tp.partition)] = tp.offset
        lag = 0
        for tp, end in ends.items():
            done = committed.get(tp, -1)
            lag += end - done if done >= 0 else end
        return lag
