"""Topic names and their idempotent creation: the pipeline's wiring lives here, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.admin import AdminClient, NewTopic

from meterstream.schemas.settings import Settings

USAGE = "usage-events"
RATED = "rated-usage"
DEAD_LETTERS = "dead-letters"
INVOICES = "invoices"


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


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create missing topics (safe to run again); returns the names it created."""
    topics = Topics.from_settings(settings)
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(name, num_partitions=settings.partitions, replication_factor=1)
        for name in topics.all()
        if name not in existing
    ]
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
    return created
