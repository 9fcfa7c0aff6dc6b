"""Lifecycle events on the real broker: the dispatcher produces every event to `<prefix>invoice-events`, keyed
`tenant/invoice_id` (payments `tenant/customer`), the body the webhooks carry, and marks them published only
after Kafka acknowledged them; webhooks still go out while Kafka is unreachable."""

from __future__ import annotations

import uuid
from datetime import date

import orjson
import pytest
from invoice_helpers import TENANT, issued
from kafka_helpers import read_from_start

from meterstream.deploy.ports import free_port
from meterstream.entities.payments import record_payment
from meterstream.schemas.settings import Settings
from meterstream.webhooks import deliveries, endpoints
from meterstream.webhooks.dispatcher import Dispatcher
from meterstream.webhooks.outbox import events
from meterstream.webhooks.topic import invoice_events_topic

pytestmark = pytest.mark.kafka


def test_events_reach_the_invoice_events_topic(kafka_settings: Settings, sf, receiver) -> None:
    settings = kafka_settings.model_copy(update={"topic_prefix": f"wh-{uuid.uuid4().hex[:8]}-", "partitions": 2})
    endpoints.register(sf, TENANT, receiver.url, event_types=["payment.recorded"])
    issued(sf, "inv-1", total="120.00")
    record_payment(sf, TENANT, amount="120.00", currency="EUR", paid_on=date(2026, 12, 5), reference="bank-1",
                   invoice_id="inv-1")  # fmt: skip
    d = Dispatcher(settings, sf)
    try:
        assert d.run_once() == {"digested": 0, "announced": 0, "fanned_out": 4, "published": 4, "attempted": 1}
        # published once
        assert d.run_once() == {"digested": 0, "announced": 0, "fanned_out": 0, "published": 0, "attempted": 0}
    finally:
        d.stop()
    topic = invoice_events_topic(settings)
    assert topic == settings.topic_prefix + "invoice-events"
    msgs = read_from_start(settings, topic, 4)
    stored = {e.event_id: e for e in events(sf, TENANT)}
    assert len(msgs) == 4 and all(e.published_at is not None for e in stored.values())
    by_key: dict[bytes, list[str]] = {}
    for m in msgs:
        body = orjson.loads(m.value())
        headers = dict(m.headers())
        assert headers["event-id"].decode() == body["id"] and headers["event-type"].decode() == body["type"]
        assert m.value().decode() == stored[body["id"]].body  # the very bytes the webhooks carry
        by_key.setdefault(m.key(), []).append(body["type"])
    in_order = ["invoice.created", "invoice.finalized", "invoice.paid"]  # one key: one partition, in order
    assert by_key == {b"acme-t/inv-1": in_order, b"acme-t/c1": ["payment.recorded"]}
    assert [x.status for x in deliveries.list_deliveries(sf, TENANT)] == ["delivered"]


def test_webhooks_go_out_while_kafka_is_down(sf, receiver) -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="down-")
    endpoints.register(sf, TENANT, receiver.url)
    issued(sf, "inv-1")

    class Unreachable:  # what a producer to a dead broker does at flush: nothing acknowledged
        def produce(self, *args, **kwargs) -> None:
            return None

        def flush(self, timeout: float) -> int:
            return 1

    d = Dispatcher(settings, sf, producer_factory=Unreachable)
    d._topic_ready = True  # asking the dead broker for its topics would wait 30 s
    try:
        assert d.run_once() == {"digested": 0, "announced": 0, "fanned_out": 2, "published": 0, "attempted": 2}
    finally:
        d.stop()
    assert len(receiver.requests) == 2
    assert all(e.published_at is None for e in events(sf, TENANT))  # still to publish: kept, tried again
