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
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=tracker)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if not flush:
        return tracker
    remaining = producer.flush(120)
    if remaining:
        raise KafkaException(f"{remaining} messages not delivered within 120 s")
    if tracker.errors:
        raise KafkaException(f"{len(tracker.errors)} deliveries failed, first: {tracker.errors[0]}")
    return tracker
