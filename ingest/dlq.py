"""Dead letters: read them back (read-only, no consumer group commits) and re-drive them after a fix.

Why replaying is safe: a re-driven event is charged once. The processor deduplicates by (tenant, id),
and an event that was dead-lettered left no dedup entry (the entry is written only when an event is
rated). So the first replay that rates it is NEW and RATED; any later replay of the same record (an
operator running `dlq replay` twice, or a copy of it) lands at another offset and is a DUPLICATE,
dropped and counted. Replays go to the source partition so that they meet the same per-partition
dedup entries and running totals as the key's other events (the key decides that partition).

Marks and the replay position. Every replayed letter is marked: a record keyed by its source position
(`topic:partition:offset`) on the compacted topic `dead-letters-replayed` (when, where in the dead-letter
topic, by whom), written once Kafka acknowledged the replayed events; `dlq list` shows it. `meterstream dlq
replay` reads the dead-letter topic from the replay position, the offsets committed by the consumer group
`meterstream-dlq-replay` on it, not from the beginning, and skips letters already marked. After a replay it
moves the position, per partition, over the letters that are settled (replayed now or marked before, and
messages that are no dead letter at all) up to the first one that is not: a letter a filter left out is
offered again by the next replay, never skipped for good. `--from-beginning` reads the whole topic and
`--again` replays marked letters too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, make_dataclass
from datetime import UTC, datetime
from typing import Any, get_type_hints

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from meterstream.ingest.lag import LagProbe
from meterstream.ingest.producer import DeliveryTracker, make_producer, produce_waiting, undelivered
from meterstream.ingest.topics import Topics
from meterstream.schemas.rated import DeadLetter
from meterstream.schemas.settings import Settings

log = logging.getLogger(__name__)

REPLAY_HEADER = "meterstream-replay-of"
REPLAY_GROUP = "meterstream-dlq-replay"  # its committed offsets on the dead-letter topic: the replay position
MARKS_TOPIC = "dead-letters-replayed"  # compacted: one mark per replayed letter, keyed by its source position
MARKS_CONFIG = {"cleanup.policy": "compact"}
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


Scanned = tuple[int, int, "DeadLetterRecord | None"]  # (dlq partition, dlq offset, the letter; None: not one)


def read_topic(
    settings: Settings, topic: str, timeout: float = 30.0, start: dict[int, int] | None = None
) -> Iterator[Message]:
    """Every message below the end offsets seen at start (offsets ascend per partition), from `start`
    (per partition; default: the beginning); commits nothing.

    Assigns partitions explicitly (no group join, no offset commits), so it never disturbs the
    pipeline's consumers; messages produced after the start are not read, so it always terminates.
    """
    start = start or {}
    ends = {p: end for p, end in _end_offsets(settings, topic, timeout).items() if end > start.get(p, 0)}
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
        consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in ends])
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
    out = letters(scan_dead_letters(settings), stage=stage, reason_contains=reason_contains, tenant=tenant)
    return out[:limit] if limit is not None else out


def scan_dead_letters(settings: Settings, start: dict[int, int] | None = None) -> list[Scanned]:
    """Every message of the dead-letter topic from `start` (default: the beginning), in topic order, parsed."""
    topic = Topics.from_settings(settings).dead_letters
    msgs = sorted(read_topic(settings, topic, start=start), key=lambda m: (m.partition(), m.offset()))
    return [(m.partition(), m.offset(), parse_record(m.value(), m.partition(), m.offset())) for m in msgs]


def letters(
    scanned: Iterable[Scanned],
    *,
    stage: str | None = None,
    reason_contains: str | None = None,
    tenant: str | None = None,
) -> list[DeadLetterRecord]:
    """The dead letters of a scan, one per source position, filtered (see `read_dead_letters`)."""
    out = dedup_by_source(r for _, _, r in scanned if r is not None)
    return [r for r in out if _matches(r, stage, reason_contains, tenant)]


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
    return tenant is None or letter_tenant(r) == tenant


def letter_tenant(r: DeadLetterRecord) -> str | None:
    """The letter's tenant, else the tenant its Kafka key names (`tenant/customer`): input that did not parse has
    no tenant field, but its producer keyed it by tenant, so `dlq list --tenant` finds it too."""
    if r.tenant:
        return r.tenant
    if r.key and "/" in r.key:
        return r.key.split("/", 1)[0] or None
    return None


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
            result.skipped_unparseable.append(source_text(r))
    if not todo:
        return result
    producer = producer or make_producer(settings)
    partitions = _partition_count(producer, usage)
    tracker = DeliveryTracker()
    for i, r in enumerate(todo, 1):
        source = source_text(r)
        kwargs: dict[str, Any] = {
            "value": r.raw.encode(),
            "key": r.key.encode() if r.key is not None else None,
            "headers": [(REPLAY_HEADER, source.encode())],
            "on_delivery": tracker,
        }
        if r.partition < partitions:
            kwargs["partition"] = r.partition
        produce_waiting(producer, usage, **kwargs)
        producer.poll(0)
        result.replayed.append(source)
        if progress is not None and i % 1000 == 0:
            progress(i, len(todo))
    if (why := undelivered(producer, tracker, 120)) is not None:
        raise KafkaException(f"replayed messages not delivered: {why}")
    _mark(settings, producer, todo)
    if progress is not None:
        progress(len(todo), len(todo))
    return result


def _partition_count(producer: Producer, topic: str) -> int:
    meta = producer.list_topics(topic, timeout=10).topics[topic]
    if meta.error is not None:
        raise KafkaException(meta.error)
    return len(meta.partitions)


def source_text(r: DeadLetterRecord) -> str:
    return f"{r.topic}:{r.partition}:{r.offset}"


# ---- marks and the replay position --------------------------------------------------------------------------


def marks_topic(settings: Settings) -> str:
    return settings.topic(MARKS_TOPIC)


def ensure_marks_topic(settings: Settings, timeout: float = 30.0) -> None:
    """Create the compacted marks topic when missing (never left to the broker's auto-creation)."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    name = marks_topic(settings)
    if name in admin.list_topics(timeout=timeout).topics:
        return
    new = NewTopic(name, num_partitions=1, replication_factor=1, config=MARKS_CONFIG)
    try:
        admin.create_topics([new], operation_timeout=timeout)[name].result()
    except KafkaException as exc:  # a concurrent creator is fine
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise


def read_marks(settings: Settings) -> dict[str, dict[str, Any]]:
    """Replayed letters by source position (`topic:partition:offset`): when, and where the letter sits.
    Creates nothing: no marks topic yet means nothing was marked."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    if marks_topic(settings) not in admin.list_topics(timeout=30).topics:
        return {}
    marks: dict[str, dict[str, Any]] = {}
    for m in read_topic(settings, marks_topic(settings)):
        key = m.key()
        if key is None:
            continue
        if m.value() is None:
            marks.pop(key.decode(), None)
            continue
        try:
            marks[key.decode()] = orjson.loads(m.value())
        except orjson.JSONDecodeError:
            log.warning("replay mark %r is not JSON; ignored", key)
    return marks


def _mark(settings: Settings, producer: Producer, records: list[DeadLetterRecord]) -> None:
    """Mark replayed letters (after their events were acknowledged). A mark that fails is logged, not raised:
    the events are replayed, and replaying a letter again is harmless (the processor drops the duplicate)."""
    try:
        ensure_marks_topic(settings)
        topic, now = marks_topic(settings), datetime.now(UTC).isoformat(timespec="milliseconds")
        tracker = DeliveryTracker()
        for r in records:
            source = source_text(r)
            mark = {"source": source, "dlq_partition": r.dlq_partition, "dlq_offset": r.dlq_offset, "replayed_at": now}
            produce_waiting(producer, topic, key=source.encode(), value=orjson.dumps(mark), on_delivery=tracker)
            producer.poll(0)
        if (why := undelivered(producer, tracker, 60)) is not None:
            raise KafkaException(f"marks not delivered: {why}")
    except KafkaException as exc:
        log.warning("replayed %d dead letters but could not mark them (%s)", len(records), exc)


def _group_consumer(settings: Settings) -> Consumer:
    return Consumer({"bootstrap.servers": settings.bootstrap, "group.id": settings.topic(REPLAY_GROUP),
                     "enable.auto.commit": False})  # fmt: skip


def replay_position(settings: Settings) -> dict[int, int]:
    """Per dead-letter partition, the offset the next `dlq replay` reads from (none committed: absent)."""
    topic = Topics.from_settings(settings).dead_letters
    consumer = _group_consumer(settings)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        tps = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}
    finally:
        consumer.close()


def commit_replay_position(settings: Settings, position: dict[int, int]) -> None:
    if not position:
        return
    topic = Topics.from_settings(settings).dead_letters
    consumer = _group_consumer(settings)
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in position.items()], asynchronous=False)
    finally:
        consumer.close()


def advance(scanned: Iterable[Scanned], settled: set[str], start: dict[int, int]) -> dict[int, int]:
    """The replay position after a replay: per partition, past every message from `start` on that is settled
    (no dead letter at all, or a letter whose source is in `settled`) up to the first letter that is not."""
    position = dict(start)
    blocked: set[int] = set()
    for p, offset, record in sorted(scanned, key=lambda m: (m[0], m[1])):
        if p in blocked:
            continue
        if record is None or source_text(record) in settled:
            position[p] = offset + 1
        else:
            blocked.add(p)
    return position
