"""ingest/producer.py: `produce_waiting` (produce, waiting for room in librdkafka's local queue) and `undelivered`
(flush, then say what was not acknowledged), the one copy every producer of the code base uses (produce_all, the
dead-letter replay and its marks, the outbox relay, the webhook dispatcher, the chaos and dunning runs, the
changelog's start mark). A stand-in producer plays librdkafka's part."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaException

from meterstream.ingest.producer import DeliveryTracker, produce_all, produce_waiting, undelivered


class FakeProducer:
    """Refuses the first `full` produce calls with BufferError (queue full); each poll notes its timeout; flush
    delivers every queued message through its callback (an error for those listed in `fail`) but leaves the last
    `stuck` of them unacknowledged, and returns how many are left."""

    def __init__(self, full: int = 0, fail: tuple[bytes, ...] = (), stuck: int = 0) -> None:
        self.full, self.fail, self.stuck = full, fail, stuck
        self.queued: list[dict[str, Any]] = []
        self.polls: list[float] = []
        self.flushed: list[float] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("Local: Queue full")
        self.queued.append({"topic": topic, **kwargs})

    def poll(self, timeout: float) -> int:
        self.polls.append(timeout)
        return 0

    def flush(self, timeout: float) -> int:
        self.flushed.append(timeout)
        done = self.queued[: len(self.queued) - self.stuck]
        for m in done:
            m["on_delivery"]("broker down" if m["value"] in self.fail else None, None)
        return len(self.queued) - len(done)


def test_produce_waiting_polls_while_the_queue_is_full_then_produces_once() -> None:
    producer = FakeProducer(full=3)
    produce_waiting(producer, "t", value=b"v", key=b"k", partition=2)  # type: ignore[arg-type]
    assert producer.polls == [0.05, 0.05, 0.05]  # three refusals, a poll after each
    assert producer.queued == [{"topic": "t", "value": b"v", "key": b"k", "partition": 2}]


def test_undelivered_is_none_when_every_message_was_acknowledged() -> None:
    producer, tracker = FakeProducer(), DeliveryTracker()
    for v in (b"a", b"b"):
        produce_waiting(producer, "t", value=v, on_delivery=tracker)  # type: ignore[arg-type]
    assert undelivered(producer, tracker, 30, sent=2) is None  # type: ignore[arg-type]
    assert producer.flushed == [30] and tracker.delivered == 2


def test_undelivered_names_the_failures_and_the_first_error() -> None:
    producer, tracker = FakeProducer(fail=(b"b", b"c")), DeliveryTracker()
    for v in (b"a", b"b", b"c"):
        produce_waiting(producer, "t", value=v, on_delivery=tracker)  # type: ignore[arg-type]
    assert undelivered(producer, tracker, 30, sent=3) == "2 failed, first: broker down"  # type: ignore[arg-type]


def test_undelivered_counts_what_the_timeout_left_and_what_never_reported() -> None:
    producer, tracker = FakeProducer(stuck=2), DeliveryTracker()
    for v in (b"a", b"b", b"c"):
        produce_waiting(producer, "t", value=v, on_delivery=tracker)  # type: ignore[arg-type]
    assert undelivered(producer, tracker, 2.5) == "2 not acknowledged within 2.5 s"  # type: ignore[arg-type]
    # nothing left in the queue, yet only 1 of the 3 sent was reported delivered (the tracker saw 1)
    producer, tracker = FakeProducer(), DeliveryTracker()
    produce_waiting(producer, "t", value=b"a", on_delivery=tracker)  # type: ignore[arg-type]
    assert undelivered(producer, tracker, 30, sent=3) == "0 not acknowledged within 30 s"  # type: ignore[arg-type]


def test_produce_all_raises_with_the_reason() -> None:
    producer = FakeProducer(full=1, fail=(b"2",))
    with pytest.raises(KafkaException, match="messages not delivered: 1 failed, first: broker down"):
        produce_all(producer, "t", [(b"k", b"1"), (b"k", b"2")])  # type: ignore[arg-type]
    assert [m["value"] for m in producer.queued] == [b"1", b"2"] and producer.flushed == [120]
