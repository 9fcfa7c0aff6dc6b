"""Idempotent, acks=all producer of usage events, keyed by tenant + customer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException, Producer

from meterstream.schemas.settings import Settings


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    """A producer that never reorders nor duplicates on retry (enable.idempotence, acks=all)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
    }
    conf.update(overrides)
    return Producer(conf)


class DeliveryTracker:
    """Counts acknowledged and failed deliveries; a failure is raised at flush, never ignored."""

    def __init__(self) -> None:
        self.delivered = 0
        self.errors: list[str] = []

    def __call__(self, err: Any, msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.errors.append(str(err))


def produce_all(
    producer: Producer,
    topic: str,
    records: Iterable[tuple[bytes, bytes]],
    tracker: DeliveryTracker | None = None,
    flush: bool = True,
) -> DeliveryTracker:
    """Produce (key, value) pairs, waiting for room when the local queue is full; flush at the end.

    `flush=False` leaves delivery to the caller (a paced producer flushes once, at its end).
    """
    tracker = tracker or DeliveryTracker()
    for key, value in records:
        produce_waiting(producer, topic, value=value, key=key, on_delivery=tracker)
        producer.poll(0)
    if not flush:
        return tracker
    if (why := undelivered(producer, tracker, 120)) is not None:
        raise KafkaException(f"messages not delivered: {why}")
    return tracker


def produce_waiting(producer: Producer, topic: str, **kwargs: Any) -> None:
    """`producer.produce(topic, **kwargs)`; while the local queue is full, serve delivery reports and try again."""
    while True:
        try:
            producer.produce(topic, **kwargs)
            return
        except BufferError:
            producer.poll(0.05)


def undelivered(producer: Producer, tracker: DeliveryTracker, timeout: float, sent: int | None = None) -> str | None:
    """Flush `producer` (at most `timeout` seconds): None when every message was acknowledged (given `sent`, when
    `tracker` counted that many), else why not: how many deliveries failed and the first error, or how many
    messages were still unacknowledged after `timeout`."""
    remaining = producer.flush(timeout)
    if tracker.errors:
        return f"{len(tracker.errors)} failed, first: {tracker.errors[0]}"
    if remaining or (sent is not None and tracker.delivered != sent):
        return f"{remaining} not acknowledged within {timeout:g} s"
    return None
