"""Dead letters: read them back (read-only, no consumer group commits) and re-drive them after a fix.

Why replaying is safe: a re-driven event is charged once. The processor deduplicates by (tenant, id),
and an event that was dead-lettered left no dedup entry (the entry is written only when an event is
rated). So the first replay that rates it is NEW and RATED; any later replay of the same record (an
operator running `dlq replay` twice, or a copy of it) lands at another offset and is a DUPLICATE,
dropped and counted. Replays go to the source partition so that they meet the same per-partition
dedup entries and running totals as the key's other events (the key decides that partition).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, make_dataclass
from typing import Any, get_type_hints

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from meterstream.ingest.lag import LagProbe
from meterstream.ingest.producer import DeliveryTracker, make_producer
from meterstream.ingest.topics import Topics
from meterstream.schemas.rated import DeadLetter
from meterstream.schemas.settings import Settings

log = logging.getLogger(__name__)

REPLAY_HEADER = "meterstream-replay-of"
_NOT_READY = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE}


class _RecordMethods:
    """What a dead letter read back from the topic answers besides its fields (`record_type` adds those)."""

    @property
    def source(self) -> tuple[str, int, int]:
        """The source message's position: a dead letter's identity (the topic may hold it twice)."""
        return (self.topic, self.partition, self.offset)  # type: ignore[attr-defined]

    @property
    def position(self) -> str:
        """`partition:offset` of the source message, as `dlq show` takes it."""
        return f"{self.partition}:{self.offset}"  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


def record_type(letter: type) -> type:
    """A frozen dataclass of the `letter` TypedDict's fields plus where it sits in the dead-letter topic."""
    fields = [*get_type_hints(letter).items(), ("dlq_partition", int), ("dlq_offset", int)]
    doc = f"A `{letter.__name__}` plus where it sits in the dead-letter topic."
    namespace = {"__module__": __name__, "__doc__": doc}
    return make_dataclass("DeadLetterRecord", fields, bases=(_RecordMethods,), frozen=True, namespace=namespace)


# The fields are `schemas.rated.DeadLetter`'s, defined there only; the on-topic JSON is that dict.
DeadLetterRecord = record_type(DeadLetter)
_FIELDS = tuple(get_type_hints(DeadLetter))


@dataclass
class ReplayResult:
    """What a replay did, by source position (`topic:partition:offset`)."""

    replayed: list[str] = field(default_factory=list)
    skipped_unparseable: list[str] = field(default_factory=list)


def read_topic(settings: Settings, topic: str, timeout: float = 30.0) -> Iterator[Message]:
    """Every message below the end offsets seen at start (offsets ascend per partition); commits nothing.

    Assigns partitions explicitly (no group join, no offset commits), so it never disturbs the
    pipeline's consumers; messages produced after the start are not read, so it always terminates.
    """
    ends = {p: end for p, end in _end_offsets(settings, topic, timeout).items() if end > 0}
    if not ends:
        return
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap,
            "group.id": "meterstream-dlq-reader",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",  # offset 0 may have been trimmed by retention
            "enable.partition.eof": True,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        pending = set(ends)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: partitions {sorted(pending)} not read to their end in {timeout} s")
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                p = msg.partition()
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(p)
                    elif err.fatal():
                        raise KafkaException(err)
                    else:  # librdkafka retries by itself; the deadline bounds the wait
                        log.warning("%s: consumer error: %s", topic, err)
                    continue
                if p not in pending or msg.offset() >= ends[p]:
                    continue
                deadline = time.monotonic() + timeout  # progress: keep going
                yield msg
                if msg.offset() >= ends[p] - 1:
                    pending.discard(p)
    finally:
        consumer.close()


def _end_offsets(settings: Settings, topic: str, timeout: float) -> dict[int, int]:
    """End offsets, retried while the broker is still electing leaders (e.g. right after a restart)."""
    probe = LagProbe(settings)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                return probe.end_offsets(topic)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                retriable = isinstance(err, KafkaError) and (err.retriable() or err.code() in _NOT_READY)
                if not retriable or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        probe.close()


def parse_record(value: bytes | None, dlq_partition: int, dlq_offset: int) -> DeadLetterRecord | None:
    """One dead-letter message as a record; None (logged) when it is not a dead letter at all."""
    try:
        data = orjson.loads(value or b"")
        record = DeadLetterRecord(**{k: data[k] for k in _FIELDS}, dlq_partition=dlq_partition, dlq_offset=dlq_offset)
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        log.warning("dead-letter message %d:%d is not a dead letter (%s); ignored", dlq_partition, dlq_offset, exc)
        return None
    return record


def read_dead_letters(
    settings: Settings,
    *,
    stage: str | None = None,
    reason_contains: str | None = None,
    tenant: str | None = None,
    limit: int | None = None,
) -> list[DeadLetterRecord]:
    """Dead letters in topic order, one per source position (the first copy), filtered.

    The processor may repeat its output after a crash, so the topic can hold the same dead letter
    twice; both copies sit in the same partition (the source's), the first at the lower offset.
    `reason_contains` matches case-insensitively; `limit` caps the result after filtering.
    """
    topic = Topics.from_settings(settings).dead_letters
    msgs = sorted(read_topic(settings, topic), key=lambda m: (m.partition(), m.offset()))
    records = (parse_record(m.value(), m.partition(), m.offset()) for m in msgs)
    out = dedup_by_source(r for r in records if r is not None)
    out = [r for r in out if _matches(r, stage, reason_contains, tenant)]
    return out[:limit] if limit is not None else out


def dedup_by_source(records: Iterable[DeadLetterRecord]) -> list[DeadLetterRecord]:
    """Keep the first record per source position (topic, partition, offset)."""
    seen: set[tuple[str, int, int]] = set()
    out = []
    for r in records:
        if r.source not in seen:
            seen.add(r.source)
            out.append(r)
    return out


def _matches(r: DeadLetterRecord, stage: str | None, reason_contains: str | None, tenant: str | None) -> bool:
    if stage is not None and r.stage != stage:
        return False
    if reason_contains is not None and reason_contains.lower() not in r.reason.lower():
        return False
    return tenant is None or r.tenant == tenant


def parse_position(text: str) -> tuple[int, int]:
    """`partition:offset` (a leading `topic:` is accepted and ignored) -> (partition, offset)."""
    parts = text.rsplit(":", 2)
    try:
        partition, offset = int(parts[-2]), int(parts[-1])
    except (IndexError, ValueError):
        raise ValueError(f"{text!r}: expected PARTITION:OFFSET of the source message, e.g. 2:1234") from None
    if partition < 0 or offset < 0:
        raise ValueError(f"{text!r}: partition and offset must be >= 0")
    return partition, offset


def select_positions(
    records: Iterable[DeadLetterRecord], positions: Iterable[tuple[int, int]]
) -> list[DeadLetterRecord]:
    """The records whose source (partition, offset) is one of `positions`."""
    wanted = set(positions)
    return [r for r in records if (r.partition, r.offset) in wanted]


def is_replayable(record: DeadLetterRecord) -> bool:
    """Only a JSON object can become an event; anything else would just be dead-lettered again."""
    try:
        return isinstance(orjson.loads(record.raw), dict)
    except orjson.JSONDecodeError:
        return False


def replay_dead_letters(
    settings: Settings,
    records: Iterable[DeadLetterRecord],
    *,
    producer: Producer | None = None,
    include_unparseable: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Re-produce each record's raw bytes to the usage topic, with its original key, to its source partition.

    Each message carries the header `meterstream-replay-of: topic:partition:offset` (its source).
    Idempotent producer with acks=all (`make_producer`); raises if any delivery fails. Records whose
    raw text is not a JSON object are skipped and counted unless `include_unparseable`. Charged
    once: see the module docstring (the processor's (tenant, id) dedup drops every later replay).
    `progress(done, total)` is called every 1,000 messages and at the end.
    """
    usage = Topics.from_settings(settings).usage
    result = ReplayResult()
    todo: list[DeadLetterRecord] = []
    for r in records:
        if include_unparseable or is_replayable(r):
            todo.append(r)
        else:
            result.skipped_unparseable.append(_source_text(r))
    if not todo:
        return result
    producer = producer or make_producer(settings)
    partitions = _partition_count(producer, usage)
    tracker = DeliveryTracker()
    for i, r in enumerate(todo, 1):
        source = _source_text(r)
        kwargs: dict[str, Any] = {
            "value": r.raw.encode(),
            "key": r.key.encode() if r.key is not None else None,
            "headers": [(REPLAY_HEADER, source.encode())],
            "on_delivery": tracker,
        }
        if r.partition < partitions:
            kwargs["partition"] = r.partition
        _produce(producer, usage, kwargs)
        result.replayed.append(source)
        if progress is not None and i % 1000 == 0:
            progress(i, len(todo))
    remaining = producer.flush(120)
    if remaining:
        raise KafkaException(f"{remaining} replayed messages not delivered within 120 s")
    if tracker.errors:
        raise KafkaException(f"{len(tracker.errors)} replays failed, first: {tracker.errors[0]}")
    if progress is not None:
        progress(len(todo), len(todo))
    return result


def _produce(producer: Producer, topic: str, kwargs: dict[str, Any]) -> None:
    """Produce, waiting for room when the local queue is full (as `produce_all` does)."""
    while True:
        try:
            producer.produce(topic, **kwargs)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)


def _partition_count(producer: Producer, topic: str) -> int:
    meta = producer.list_topics(topic, timeout=10).topics[topic]
    if meta.error is not None:
        raise KafkaException(meta.error)
    return len(meta.partitions)


def _source_text(r: DeadLetterRecord) -> str:
    return f"{r.topic}:{r.partition}:{r.offset}"
