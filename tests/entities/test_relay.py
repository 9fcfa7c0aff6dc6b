"""The outbox relay on a real broker and both databases (SQLite, PostgreSQL): a change written through the
store reaches the processors' live catalog within 5 s, effective-dated; the position moves only after Kafka
acknowledged; dead letters waiting for a subscription are replayed once it is relayed."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from confluent_kafka import Producer

from meterstream.entities import outbox
from meterstream.entities.customers import put_customer
from meterstream.entities.plans import publish_plan
from meterstream.entities.relay import RELAY_NAME, DeadLetterReplayer, OutboxRelay, RelayError
from meterstream.entities.subscriptions import cancel_subscription, change_plan, create_subscription
from meterstream.ingest.dlq import REPLAY_HEADER, read_topic
from meterstream.ingest.topics import Topics, ensure_topics
from meterstream.processor.live_catalog import LiveCatalog, no_subscription_reason
from meterstream.rating import delta
from meterstream.schemas.entities import CustomerDoc, Phase, PlanVersionDoc, SubscriptionDoc
from meterstream.schemas.settings import Settings

pytestmark = pytest.mark.kafka
T = "acme"
NOV = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    s = kafka_settings.model_copy(update={"topic_prefix": f"rl-{uuid.uuid4().hex[:8]}-", "partitions": 1})
    ensure_topics(s)
    return s


def plan(code: str, unit: str) -> PlanVersionDoc:
    return PlanVersionDoc(tenant=T, code=code, version=0, name=code, currency="USD",
                          usage={"api_calls": {"model": "unit", "unit_amount": unit}})  # fmt: skip


def customer(ext: str) -> CustomerDoc:
    return CustomerDoc(tenant=T, external_id=ext, name=ext.upper(), version=0)


def wait_for(live: LiveCatalog, check, timeout: float = 5.0) -> float:
    """Poll the live catalog as the processor does until `check()`; the seconds it took (fails past timeout)."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, "the change did not reach the live catalog in time"
        live.poll_updates()
        time.sleep(0.02)
    return time.monotonic() - t0


def test_store_changes_reach_the_live_catalog_within_5_s_effective_dated(settings: Settings, sf) -> None:
    publish_plan(sf, plan("basic", "0.01"))
    publish_plan(sf, plan("pro", "0.005"))
    now = datetime.now(UTC).replace(microsecond=0)
    begin, mid, pending, end = (
        now - timedelta(days=20),
        now - timedelta(days=5),
        now + timedelta(days=10),
        now + timedelta(days=40),
    )
    relay = OutboxRelay(settings, sf, replay=False).start()
    live = LiveCatalog(settings)
    try:
        live.start()
        put_customer(sf, customer("org-1"))
        phases = [Phase(plan_code="basic", plan_version=1, start=begin)]
        create_subscription(sf, SubscriptionDoc(tenant=T, external_id="s1", customer="org-1", version=0, phases=phases))
        took = wait_for(live, lambda: live.plan_for(T, "org-1", "api_calls", now) is not None)
        assert took < 5.0
        basic = live.plan_for(T, "org-1", "api_calls", now)
        assert basic.id == "basic@1" and delta(basic.prices["api_calls"], None, Decimal(100)) == Decimal("1.00")
        assert live.plan_for(T, "org-1", "api_calls", begin - timedelta(seconds=1)) is None  # before it started
        assert live.table.customer(T, "org-1").name == "ORG-1"

        # an upgrade 5 days ago: usage before it keeps the old price, whatever order events arrive in
        change_plan(sf, T, "s1", "pro", mid)
        wait_for(live, lambda: live.plan_for(T, "org-1", "api_calls", mid).id == "pro@1")
        assert live.plan_for(T, "org-1", "api_calls", mid - timedelta(seconds=1)).id == "basic@1"
        pro = live.plan_for(T, "org-1", "api_calls", now)
        assert pro.id == "pro@1" and delta(pro.prices["api_calls"], None, Decimal(100)) == Decimal("0.500")

        # a pending downgrade in 10 days, then a cancellation in 40: each applies from its own time
        change_plan(sf, T, "s1", "basic", pending)
        wait_for(live, lambda: live.plan_for(T, "org-1", "api_calls", pending).id == "basic@1")
        assert live.plan_for(T, "org-1", "api_calls", pending - timedelta(seconds=1)).id == "pro@1"
        cancel_subscription(sf, T, "s1", end)
        wait_for(live, lambda: live.plan_for(T, "org-1", "api_calls", end) is None)
        assert live.plan_for(T, "org-1", "api_calls", end - timedelta(seconds=1)).id == "basic@1"
        assert outbox.get_relay_position(sf, RELAY_NAME) == outbox.last_seq(sf)
        ok, detail = relay.health()
        assert ok and detail["backlog"] == 0 and detail["relayed"] >= 5
    finally:
        relay.stop()
        live.close()

    # a restart of the live catalog reads the current state from the compacted topic
    again = LiveCatalog(settings)
    try:
        again.start()
        assert again.plan_for(T, "org-1", "api_calls", mid - timedelta(seconds=1)).id == "basic@1"
        assert again.plan_for(T, "org-1", "api_calls", now).id == "pro@1"
        assert again.plan_for(T, "org-1", "api_calls", pending).id == "basic@1"
        assert again.plan_for(T, "org-1", "api_calls", end) is None
    finally:
        again.close()


class RefusingProducer:
    """A producer whose every delivery fails (a broker that refuses the writes)."""

    def __init__(self) -> None:
        self.pending: list = []

    def produce(self, topic: str, key: bytes, value: bytes, on_delivery) -> None:
        self.pending.append(on_delivery)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        for callback in self.pending:
            callback("KafkaError{code=NOT_ENOUGH_REPLICAS}", None)
        self.pending.clear()
        return 0


def test_the_position_moves_only_after_kafka_acknowledged_and_a_stall_is_reported(settings: Settings, sf) -> None:
    publish_plan(sf, plan("basic", "0.01"))
    put_customer(sf, customer("org-1"))
    assert len(outbox.read_outbox(sf, 0, 100)) == 2
    last = outbox.last_seq(sf)
    now = [1000.0]
    failing = OutboxRelay(settings, sf, producer=RefusingProducer(), replay=False, clock=lambda: now[0])
    with pytest.raises(RelayError, match="2 changes after seq 0 not relayed"):
        failing.relay_once()
    assert outbox.get_relay_position(sf, RELAY_NAME) == 0
    now[0] += settings.stall_seconds + 1
    ok, detail = failing.health()
    assert not ok and detail["backlog"] == 2

    relay = OutboxRelay(settings, sf, replay=False)
    try:
        assert relay.relay_once() == 2
        assert outbox.get_relay_position(sf, RELAY_NAME) == last
        assert relay.relay_once() == 0 and relay.backlog == 0
    finally:
        relay.stop()
    msgs = list(read_topic(settings, settings.topic("entities")))
    assert [m.key().split(b"\x1f")[0] for m in msgs] == [b"plan", b"customer"]


def dead_letter(settings: Settings, event_id: str, cust: str, when: datetime, reason: str, offset: int) -> bytes:
    raw = {"id": event_id, "tenant": T, "customer": cust, "meter": "api_calls", "quantity": "5",
           "time": when.isoformat().replace("+00:00", "Z")}  # fmt: skip
    return orjson.dumps({
        "stage": "rate", "field": "customer", "reason": reason, "topic": Topics.from_settings(settings).usage,
        "partition": 0, "offset": offset, "key": f"{T}/{cust}", "raw": orjson.dumps(raw).decode(),
        "event_id": event_id, "tenant": T,
    })  # fmt: skip


def test_dead_letters_waiting_for_the_subscription_are_replayed_once(settings: Settings) -> None:
    topics = Topics.from_settings(settings)
    nov5 = NOV + timedelta(days=4)
    letters = [
        dead_letter(settings, "e1", "org-1", nov5, no_subscription_reason(T, "org-1", nov5), 10),
        dead_letter(settings, "e2", "org-1", NOV - timedelta(days=2), no_subscription_reason(T, "org-1", NOV), 11),
        dead_letter(settings, "e3", "org-2", nov5, no_subscription_reason(T, "org-2", nov5), 12),
        dead_letter(settings, "e4", "org-1", nov5, "plan 'basic@1' does not price meter 'api_calls'", 13),
        dead_letter(settings, "e1", "org-1", nov5, no_subscription_reason(T, "org-1", nov5), 10),  # repeated output
    ]
    producer = Producer({"bootstrap.servers": settings.bootstrap})
    for value in letters:
        producer.produce(topics.dead_letters, key=f"{T}/org-1".encode(), value=value)
    assert producer.flush(30) == 0

    sub = SubscriptionDoc(tenant=T, external_id="s1", customer="org-1", version=1,
                          phases=[Phase(plan_code="basic", plan_version=1, start=NOV)])  # fmt: skip
    replayer = DeadLetterReplayer(settings, delay=0)
    # e1 only: e2 is before the subscription, e3 another customer's, e4 refused for another reason
    assert replayer.replay_for([sub]) == [f"{topics.usage}:0:10"]
    assert replayer.replay_for([sub]) == []  # once per event id
    replayed = list(read_topic(settings, topics.usage))
    assert len(replayed) == 1
    assert orjson.loads(replayed[0].value())["id"] == "e1"
    assert (REPLAY_HEADER, f"{topics.usage}:0:10".encode()) in replayed[0].headers()

    # the tenant's default subscription makes org-2's usage rateable too
    default = SubscriptionDoc(tenant=T, external_id="d", customer="*", version=1,
                              phases=[Phase(plan_code="basic", plan_version=1, start=NOV)])  # fmt: skip
    assert DeadLetterReplayer(settings, delay=0).replay_for([default]) == [
        f"{topics.usage}:0:10", f"{topics.usage}:0:12"]  # fmt: skip


def test_the_api_process_runs_the_relay(settings: Settings, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from meterstream.api.app import create_app

    s = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'api.db'}"})
    with TestClient(create_app(s)) as client:  # the app owns its producer: the relay runs
        relay = client.app.state.relay
        assert relay is not None
        put_customer(client.app.state.sessions, customer("org-1"))
        deadline = time.monotonic() + 5
        while relay.relayed < 1:
            assert time.monotonic() < deadline, "the API's relay did not relay the change within 5 s"
            time.sleep(0.05)
        assert b"# HELP meterstream_relay_outbox_backlog" in client.get("/metrics").content
    assert client.app.state.relay._thread is None  # stopped with the app
    msgs = list(read_topic(settings, settings.topic("entities")))
    assert [m.key() for m in msgs] == [b"customer\x1facme\x1forg-1"]


def test_a_customer_created_through_the_api_is_rateable_within_5_s(settings: Settings, tmp_path) -> None:
    """The issue's acceptance path up to the processor's lookup: HTTP writes -> outbox -> the API's relay ->
    topic -> a processor's live catalog."""
    from fastapi.testclient import TestClient

    from meterstream.api.app import create_app

    s = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'api.db'}"})
    live = LiveCatalog(s)
    with TestClient(create_app(s)) as client:
        _info, token = client.app.state.keys.create(T, "admin", "test")
        admin = {"Authorization": f"Bearer {token}"}
        live.start()
        usage = {"api_calls": {"model": "unit", "unit_amount": "0.002"}}
        assert client.post("/v1/plans", json={"code": "pro", "name": "Pro", "currency": "EUR", "usage": usage},
                           headers=admin).status_code == 201  # fmt: skip
        assert client.post("/v1/customers", json={"external_id": "org-1", "name": "Org One"},
                           headers=admin).status_code == 201  # fmt: skip
        t0 = time.monotonic()
        r = client.post("/v1/subscriptions", json={"external_id": "s1", "customer": "org-1", "plan": "pro",
                                                   "start": "2026-01-01T00:00:00Z"}, headers=admin)  # fmt: skip
        assert r.status_code == 201, r.text
        when = datetime(2026, 1, 5, tzinfo=UTC)
        wait_for(live, lambda: live.plan_for(T, "org-1", "api_calls", when) is not None)
        assert time.monotonic() - t0 < 5.0
        pro = live.plan_for(T, "org-1", "api_calls", when)
        assert pro.id == "pro@1"
        assert delta(pro.prices["api_calls"], None, Decimal(1000)) == Decimal("2.000")  # 1000 x 0.002
        assert live.plan_for(T, "org-1", "api_calls", datetime(2025, 12, 31, 23, tzinfo=UTC)) is None
    live.close()
