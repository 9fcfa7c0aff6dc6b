"""Topic names and their idempotent creation: the pipeline's wiring lives here, in one place."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient, NewTopic

from meterstream.schemas.provisioning import BALANCES, BALANCES_CONFIG, NOTIFICATIONS, PROVISIONING
from meterstream.schemas.settings import Settings

USAGE = "usage-events"
RATED = "rated-usage"
DEAD_LETTERS = "dead-letters"
INVOICES = "invoices"
# Entity documents (customers, plan versions, subscriptions) from the SQL store's outbox: compacted, one
# partition (a total order of changes, every processor reads all of it; see docs/entities-stream.md).
ENTITIES = "entities"
ENTITIES_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}


@dataclass(frozen=True)
class Topics:
    usage: str
    rated: str
    dead_letters: str
    invoices: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        return cls(*(settings.topic(n) for n in (USAGE, RATED, DEAD_LETTERS, INVOICES)))

    def all(self) -> tuple[str, ...]:
        return (self.usage, self.rated, self.dead_letters, self.invoices)


def entities_topic(settings: Settings) -> str:
    return settings.topic(ENTITIES)


def processor_group(settings: Settings) -> str:
    """The stream processor's consumer group (both engines; also its state folder's and changelog's name): here, so
    that readers of its lag (the sink, tools) need not import the processor."""
    return settings.topic("meterstream-processor")


def provisioning_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """The topics of prepaid balances and collections (schemas/provisioning.py), each with its own config:
    `provisioning` commands and `notifications` (keyed by customer: ordered per customer), and the compacted
    `balances` (the latest snapshot per customer)."""
    return {settings.topic(PROVISIONING): {}, settings.topic(NOTIFICATIONS): {},
            settings.topic(BALANCES): dict(BALANCES_CONFIG)}  # fmt: skip


def replication(brokers: int) -> tuple[int, dict[str, str]]:
    """Replication factor and topic config on a cluster of `brokers` live brokers: RF = min(3, brokers), and
    `min.insync.replicas` 2 with 3 replicas (an acks=all write is on two nodes and survives losing one), 1
    below; a single broker gets RF 1 and no extra config, as before clusters existed."""
    rf = max(1, min(3, brokers))
    return rf, ({"min.insync.replicas": "2" if rf >= 3 else "1"} if rf > 1 else {})


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create missing topics (safe to run again), the compacted `entities` topic and the provisioning,
    notifications and compacted balances topics included, replicated as
    `replication` says for the brokers the cluster's metadata lists; returns the names it created."""
    topics = Topics.from_settings(settings)
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    md = admin.list_topics(timeout=timeout)
    existing = set(md.topics)
    rf, config = replication(len(md.brokers))
    wanted = [
        NewTopic(name, num_partitions=settings.partitions, replication_factor=rf, config=dict(config))
        for name in topics.all()
        if name not in existing
    ]
    wanted += [
        NewTopic(name, num_partitions=settings.partitions, replication_factor=rf, config={**extra, **config})
        for name, extra in provisioning_topics(settings).items()
        if name not in existing
    ]
    if entities_topic(settings) not in existing:
        wanted.append(_entities_new_topic(settings, len(md.brokers)))
    return _create(admin, wanted, timeout)


def ensure_entities_topic(settings: Settings, timeout: float = 30.0) -> bool:
    """Create the compacted `entities` topic when missing (the relay and the live catalog call it first, so a
    broker's topic auto-creation never makes it as a plain, deleting topic); True when it created it."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    name = entities_topic(settings)
    md = admin.list_topics(timeout=timeout)
    if name in md.topics:
        return False
    return bool(_create(admin, [_entities_new_topic(settings, len(md.brokers))], timeout))


def ensure_provisioning_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create the provisioning, notifications and balances topics when missing (the processor calls it before it
    produces to them, so a deployment whose topics predate them never waits on a missing topic); returns the names
    it created."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    md = admin.list_topics(timeout=timeout)
    rf, config = replication(len(md.brokers))
    wanted = [
        NewTopic(name, num_partitions=settings.partitions, replication_factor=rf, config={**extra, **config})
        for name, extra in provisioning_topics(settings).items()
        if name not in md.topics
    ]
    return _create(admin, wanted, timeout)


def _entities_new_topic(settings: Settings, brokers: int = 1) -> NewTopic:
    rf, config = replication(brokers)
    return NewTopic(
        entities_topic(settings), num_partitions=1, replication_factor=rf, config={**ENTITIES_CONFIG, **config}
    )


def _create(admin: AdminClient, wanted: list[NewTopic], timeout: float) -> list[str]:
    if not wanted:
        return []
    created = []
    for name, fut in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            fut.result()
            created.append(name)
        except Exception as exc:  # a concurrent creator is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    _wait_for_leaders(admin, created, timeout)
    return created


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Wait until the metadata shows every partition of the topics just created with a leader: a create returns
    when the controller has the topic, before the brokers do, and a client that starts at once would otherwise
    meet `UNKNOWN_TOPIC_OR_PART`. Other brokers may still lag a moment (KRaft metadata is eventually consistent:
    clients retry)."""
    deadline = time.monotonic() + timeout
    while names and time.monotonic() < deadline:
        md = admin.list_topics(timeout=timeout)
        if all(
            n in md.topics and md.topics[n].error is None and md.topics[n].partitions
            and all(p.leader >= 0 for p in md.topics[n].partitions.values())
            for n in names
        ):  # fmt: skip
            return
        time.sleep(0.1)
