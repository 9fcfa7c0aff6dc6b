"""Entities live in the stream (issue #14): a running native processor rates a customer created in the store
within 5 s, without a restart, with the plan version in effect at each event's own time; a customer with no
subscription at the event's time is dead-lettered with that reason. Real broker, both databases.

Amounts by hand: basic prices api_calls at 0.01, pro at 0.005 (unit price, no tiers). The running period
total is per (tenant, customer, meter, month), so each event's amount is quantity x its plan's unit price.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from meterstream.entities.customers import put_customer
from meterstream.entities.plans import publish_plan
from meterstream.entities.relay import OutboxRelay
from meterstream.entities.subscriptions import change_plan, create_subscription
from meterstream.ingest.dlq import read_topic
from meterstream.ingest.producer import make_producer
from meterstream.ingest.topics import Topics, ensure_topics
from meterstream.processor.live_catalog import NO_SUBSCRIPTION, open_catalog_view
from meterstream.processor.runner import NativeProcessor
from meterstream.rating.catalog import load_catalog
from meterstream.schemas.entities import CustomerDoc, Phase, PlanVersionDoc, SubscriptionDoc
from meterstream.schemas.event import format_time
from meterstream.schemas.rated import unpack
from meterstream.schemas.settings import Settings

pytestmark = pytest.mark.kafka
T = "acme"
DATA = Path(__file__).resolve().parents[1] / "data"


def plan(code: str, unit: str) -> PlanVersionDoc:
    return PlanVersionDoc(tenant=T, code=code, version=0, name=code, currency="USD",
                          usage={"api_calls": {"model": "unit", "unit_amount": unit}})  # fmt: skip


def event(i: str, customer: str, at: datetime, quantity: str) -> bytes:
    return orjson.dumps(
        {
            "id": i,
            "tenant": T,
            "customer": customer,
            "meter": "api_calls",
            "quantity": quantity,
            "time": format_time(at),
        }
    )


def rated(settings: Settings) -> dict[str, dict]:
    topics = Topics.from_settings(settings)
    out = {}
    for m in read_topic(settings, topics.rated):
        for r in unpack(m.value()):
            out[r["id"]] = r
    return out


def test_a_processor_rates_a_new_subscription_within_5_s_by_the_plan_in_effect(kafka_settings, tmp_path, sf) -> None:
    settings = kafka_settings.model_copy(
        update={"home": tmp_path, "topic_prefix": f"lr{uuid.uuid4().hex[:8]}.", "partitions": 2}
    )
    ensure_topics(settings)
    topics = Topics.from_settings(settings)
    relay = OutboxRelay(settings, sf, replay=False).start()
    view = open_catalog_view(settings, load_catalog(DATA / "catalog.yaml"))  # the file catalog: tenant t1 only
    processor = NativeProcessor(settings, view)
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,), daemon=True)
    thread.start()
    producer = make_producer(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    upgrade = now - timedelta(hours=2)
    try:
        # an event before any subscription exists: dead-lettered with the reason, not rated
        producer.produce(topics.usage, event("early", "org-1", now - timedelta(hours=1), "10"), b"acme/org-1")
        producer.flush(30)
        deadline = time.monotonic() + 30  # processed (dead-lettered) before the subscription exists
        letters = topics.dead_letters
        while not any(orjson.loads(m.value())["event_id"] == "early" for m in read_topic(settings, letters)):
            assert time.monotonic() < deadline, "the early event was not dead-lettered"
            time.sleep(0.2)
        publish_plan(sf, plan("basic", "0.01"))
        publish_plan(sf, plan("pro", "0.005"))
        put_customer(sf, CustomerDoc(tenant=T, external_id="org-1", name="Org 1", version=0))
        phases = [Phase(plan_code="basic", plan_version=1, start=now - timedelta(days=1))]
        sub = SubscriptionDoc(tenant=T, external_id="s1", customer="org-1", version=0, phases=phases)
        create_subscription(sf, sub)
        created = time.monotonic()
        # the processor keeps running: once the subscription is live, its events are rated
        deadline = created + 5.0
        i = 0
        while True:
            i += 1
            producer.produce(topics.usage, event(f"probe{i}", "org-1", now - timedelta(hours=3), "100"), b"acme/org-1")
            producer.flush(30)
            time.sleep(0.2)
            if any(r.startswith("probe") for r in rated(settings)):
                seen_after = time.monotonic() - created
                break
            assert time.monotonic() < deadline, "no event of the new subscription was rated within 5 s"
        # a mid-cycle upgrade two hours ago, answered as the API answers it: once Kafka has it on the entities
        # topic (relay.flush); events produced right after are rated with it, because the processor reads the
        # entities topic to its end before each batch (no waiting for a poll here)
        change_plan(sf, T, "s1", "pro", upgrade)
        assert relay.flush(10.0)
        producer.produce(topics.usage, event("before", "org-1", upgrade - timedelta(minutes=1), "100"), b"acme/org-1")
        producer.produce(topics.usage, event("after", "org-1", upgrade + timedelta(minutes=1), "100"), b"acme/org-1")
        producer.flush(30)
        deadline = time.monotonic() + 30
        while not {"before", "after"} <= set(rated(settings)) and time.monotonic() < deadline:
            time.sleep(0.2)
        records = rated(settings)
    finally:
        stop.set()
        thread.join(30)
        relay.stop()
    assert seen_after <= 5.0  # from the store's commit to a rated record on the topic
    first = min(int(k.removeprefix("probe")) for k in records if k.startswith("probe"))
    probe = records[f"probe{first}"]
    assert probe["plan"] == "basic@1" and Decimal(probe["amount"]) == Decimal("1.00")  # 100 x 0.01
    assert records["before"]["plan"] == "basic@1" and Decimal(records["before"]["amount"]) == Decimal("1.00")
    assert records["after"]["plan"] == "pro@1" and Decimal(records["after"]["amount"]) == Decimal("0.500")
    assert "early" not in records
    letters = [orjson.loads(m.value()) for m in read_topic(settings, topics.dead_letters)]
    early = [d for d in letters if d["event_id"] == "early"]
    assert early and early[0]["field"] == "customer" and early[0]["reason"].startswith(NO_SUBSCRIPTION)
