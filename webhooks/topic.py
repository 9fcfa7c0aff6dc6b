"""The `invoice-events` Kafka topic: every lifecycle event, the same JSON body the webhooks carry.

Named like every topic (`Settings.topic`: the prefix + `invoice-events`), with the pipeline's partition
count; keyed `tenant/invoice_id` (payments: `tenant/customer`), so one invoice's events stay in order on one
partition. Headers: `event-id` (the webhook-id) and `event-type`. Delivery is at least once: a consumer drops
repeats by `event-id`.
"""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic

from meterstream.schemas.settings import Settings

INVOICE_EVENTS = "invoice-events"


def invoice_events_topic(settings: Settings) -> str:
    return settings.topic(INVOICE_EVENTS)


def ensure_invoice_events_topic(settings: Settings, timeout: float = 30.0) -> bool:
    """Create the topic when missing (safe to repeat, a concurrent creator is fine); True when it created it."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    name = invoice_events_topic(settings)
    if name in admin.list_topics(timeout=timeout).topics:
        return False
    new = NewTopic(name, num_partitions=settings.partitions, replication_factor=1)
    for _name, fut in admin.create_topics([new], operation_timeout=timeout).items():
        try:
            fut.result()
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
            return False
    return True


__all__ = ["INVOICE_EVENTS", "ensure_invoice_events_topic", "invoice_events_topic"]
