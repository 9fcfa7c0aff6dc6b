"""Reading a test's topic on the real broker from the beginning, without joining a group's work."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Message, TopicPartition

from meterstream.schemas.settings import Settings


def read_from_start(settings: Settings, topic: str, expected: int, *, polls: int = 100,
                    beyond: bool = False) -> list[Message]:  # fmt: skip
    """The messages of `topic` from offset 0 of every partition, polling at most `polls` times 0.2 s: stops once
    `expected` came, or with `beyond` only once more than `expected` came (to see that nothing extra was sent)."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})  # fmt: skip
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        got = []
        for _ in range(polls):
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append(msg)
            if len(got) > expected or (len(got) == expected and not beyond):
                break
        return got
    finally:
        consumer.close()
