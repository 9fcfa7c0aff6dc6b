"""The latest prepaid balance of every customer, in the API's memory, from the compacted `balances` topic.

`BalanceFeed` is the state: the newest `BalanceSnapshot` per (tenant, customer) (`apply` a message, `get` one;
a tombstone forgets the customer). `FeedReader` fills it in a daemon thread of the API process: it assigns
every partition of `balances` from the beginning (no consumer group, nothing committed: the topic is
compacted, so a start reads one snapshot per customer plus the recent tail) and then follows it.

The same reader follows `rated-usage` from its end for the authorization holds (entities/holds.py): a rated
record whose dimensions name a `session_id` consumes that session's hold by its amount, and one whose
`final` dimension is "true" releases it (`on_rated`). Records rated while no API ran are not seen: those
holds end by their expiry.

`POST /v1/authorize` reads `get(...)` in O(1); a customer without a snapshot (no Kafka, or the processor has
not debited it yet) falls back to the ledger computation of api/wallet_usage.py (SQL + ClickHouse).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import msgspec
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from meterstream.background import BackgroundLoop
from meterstream.schemas.provisioning import BALANCES, BalanceSnapshot, decode_balance
from meterstream.schemas.settings import Settings

log = logging.getLogger(__name__)

OnRated = Callable[[list[dict[str, Any]]], None]


class BalanceFeed:
    """The newest snapshot per customer (thread-safe for one writer and many readers: dict operations)."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], BalanceSnapshot] = {}
        self.applied = 0
        self.bad = 0

    def __len__(self) -> int:
        return len(self._latest)

    def get(self, tenant: str, customer: str) -> BalanceSnapshot | None:
        return self._latest.get((tenant, customer))

    def put(self, snapshot: BalanceSnapshot) -> None:
        self._latest[(snapshot.tenant, snapshot.customer)] = snapshot
        self.applied += 1

    def apply(self, key: bytes | None, value: bytes | None) -> bool:
        """One message of the topic; False (counted in `bad`) for one that cannot be read."""
        if value is None:  # a tombstone: the customer has no prepaid balance any more
            if key is not None:
                tenant, _, customer = key.decode("utf-8", "replace").partition("\x1f")
                self._latest.pop((tenant, customer), None)
            return True
        try:
            snapshot = decode_balance(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.bad += 1
            log.warning("balances: an unreadable snapshot skipped (%s)", exc)
            return False
        self.put(snapshot)
        return True


class FeedReader(BackgroundLoop):
    """The background reader of `balances` (from the beginning) and, with `on_rated`, `rated-usage` (from now)."""

    thread_name = "balance-feed"

    def __init__(self, settings: Settings, feed: BalanceFeed, on_rated: OnRated | None = None) -> None:
        from meterstream.ingest.topics import RATED

        self.settings = settings
        self.feed = feed
        self.on_rated = on_rated
        self.balances_topic = settings.topic(BALANCES)
        self.rated_topic = settings.topic(RATED)
        self._init_loop()
        self._consumer: Consumer | None = None
        self.ready = threading.Event()  # set once the partitions are assigned
        self.error: str | None = None

    def _assign(self, consumer: Consumer) -> None:
        wanted = [(self.balances_topic, OFFSET_BEGINNING)]
        if self.on_rated is not None:
            wanted.append((self.rated_topic, OFFSET_END))
        parts = []
        for topic, start in wanted:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                raise KafkaException(meta.error if meta is not None else f"{topic}: no such topic")
            parts += [TopicPartition(topic, p, start) for p in sorted(meta.partitions)]
        consumer.assign(parts)

    def run(self) -> None:
        consumer = Consumer({
            "bootstrap.servers": self.settings.bootstrap,
            "group.id": f"{self.settings.topic_prefix}meterstream-api-balances",  # never joined nor committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.wait.max.ms": 500,  # an empty fetch costs the broker CPU (processor/runner.py); data ends it at once
        })  # fmt: skip
        self._consumer = consumer
        try:
            while not self._stop.is_set():
                try:
                    self._assign(consumer)
                    break
                except KafkaException as exc:  # the topics may not exist yet (the processor creates them)
                    self.error = str(exc)
                    self._stop.wait(1.0)
            self.ready.set()
            while not self._stop.is_set():
                for msg in consumer.consume(num_messages=500, timeout=0.2):
                    self._handle(msg)
        finally:
            consumer.close()

    def _handle(self, msg: Any) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("api balance feed: %s", err)
            return
        if msg.topic() == self.balances_topic:
            self.feed.apply(msg.key(), msg.value())
            return
        if self.on_rated is None:
            return
        from meterstream.entities.holds import session_of
        from meterstream.schemas.rated import unpack

        try:
            records = [r for r in unpack(msg.value()) if session_of(r)[0]]
            if records:
                self.on_rated(records)  # type: ignore[arg-type]
        except Exception:  # a bad message or a store error must not stop the balances
            log.exception("api balance feed: rated-usage message at %s/%s not applied to holds",
                          msg.partition(), msg.offset())  # fmt: skip
