"""The dispatcher against a local HTTP receiver, on SQLite and PostgreSQL, with an injected clock: a signed POST
for an invoice finalized through entities/invoices.finalize (verified by the receiver with our verify and with the
reference library), retries on the backoff schedule, dead after the last try, replay delivers; the event stays in
the outbox whatever the receiver does; endpoint filters; the stall check."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from invoice_helpers import TENANT, issued
from standardwebhooks.webhooks import Webhook

from meterstream.entities.common import Invalid, NotFound
from meterstream.schemas.settings import Settings
from meterstream.webhooks import deliveries, endpoints
from meterstream.webhooks.dispatcher import Dispatcher
from meterstream.webhooks.outbox import events
from meterstream.webhooks.signing import verify

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime = T0) -> None:
        self.at = at
        self.mono = 1000.0

    def __call__(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)
        self.mono += seconds


def dispatcher(sf, clock: Clock, **kwargs) -> Dispatcher:
    kwargs.setdefault("kafka", False)
    return Dispatcher(Settings(stall_seconds=60), sf, now=clock, monotonic=clock.monotonic, timeout=5.0,
                      rng=random.Random(7), **kwargs)  # fmt: skip


def test_a_finalized_invoice_reaches_the_receiver_signed(sf, receiver) -> None:
    ep = endpoints.register(sf, TENANT, receiver.url, event_types=["invoice.finalized"], description="ERP")
    issued(sf, "inv-1", total="120.00")
    clock = Clock(datetime.now(UTC))  # the reference library checks the timestamp against the real time
    d = dispatcher(sf, clock)
    try:
        assert d.run_once() == {
            "digested": 0,
            "announced": 0,
            "fanned_out": 2,
            "published": 0,
            "attempted": 1,
        }  # created + finalized; 1 wanted
    finally:
        d.stop()
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert headers["content-type"] == "application/json"
    assert headers["webhook-timestamp"] == str(int(clock.at.timestamp()))
    event_id = verify(ep.secret, headers, body, now=clock.at.timestamp())
    assert Webhook(ep.secret).verify(body, headers)["type"] == "invoice.finalized"
    sent = orjson.loads(body)
    assert sent["id"] == event_id and sent["type"] == "invoice.finalized"
    assert (sent["data"]["number"], sent["data"]["total"], sent["data"]["currency"]) == ("ACME-2026-000001", "120.00",
                                                                                         "EUR")  # fmt: skip
    (done,) = deliveries.list_deliveries(sf, TENANT)
    assert (done.status, done.attempts, done.last_status, done.event_id) == ("delivered", 1, 200, event_id)
    assert [e.fanned_at is not None for e in events(sf, TENANT)] == [True, True]


def test_failures_back_off_then_dead_then_replay_delivers(sf, receiver) -> None:
    receiver.statuses = [500]
    ep = endpoints.register(sf, TENANT, receiver.url)
    issued(sf, "inv-1")
    clock = Clock()
    schedule = (5.0, 30.0, 120.0)  # 4 attempts: now, ~5 s, ~30 s, ~2 min later
    d = dispatcher(sf, clock, schedule=schedule, jitter=0.2)
    try:
        d.run_once()  # 2 events (created, finalized) -> 2 deliveries, both fail once
        assert len(receiver.requests) == 2
        for step, base in enumerate(schedule, start=1):
            pending = deliveries.list_deliveries(sf, TENANT, status="pending")
            assert len(pending) == 2 and all(p.attempts == step for p in pending)
            assert all(p.last_status == 500 and "HTTP 500" in (p.last_error or "") for p in pending)
            waits = [(p.next_at - clock.at).total_seconds() for p in pending]
            assert all(base * 0.8 <= w <= base * 1.2 for w in waits), (step, waits)  # backoff with jitter
            clock.advance(min(waits) - 0.5)
            d.run_once()  # not due yet: nothing sent
            assert len(receiver.requests) == 2 * step
            clock.advance(max(waits) - min(waits) + 1.0)
            d.run_once()
            assert len(receiver.requests) == 2 * (step + 1)
        dead = deliveries.list_deliveries(sf, TENANT, status="dead")
        assert len(dead) == 2 and all(x.attempts == 4 for x in dead)
        assert d.health()[0]  # failing receivers are not a stalled dispatcher
        clock.advance(7 * 24 * 3600)
        d.run_once()
        assert len(receiver.requests) == 8  # dead: no more tries
        ids = [h["webhook-id"] for h, _ in receiver.requests]
        assert len(set(ids)) == 2 and ids.count(ids[0]) == 4  # the same webhook-id on every retry
        # the events are kept whatever the receiver did
        assert [e.type for e in events(sf, TENANT)] == ["invoice.created", "invoice.finalized"]

        receiver.statuses = [204]
        replayed = deliveries.replay(sf, TENANT, clock.at, endpoint_id=ep.endpoint_id)
        assert sorted(r.id for r in replayed) == sorted(x.id for x in dead)
        d.run_once()
        assert len(receiver.requests) == 10
        for headers, body in receiver.requests[-2:]:
            verify(ep.secret, headers, body, now=clock.at.timestamp())
        done = deliveries.list_deliveries(sf, TENANT)
        assert [(x.status, x.attempts, x.last_status) for x in done] == [("delivered", 1, 204)] * 2
        assert deliveries.replay(sf, TENANT, clock.at) == []  # nothing dead any more
    finally:
        d.stop()


def test_an_unreachable_receiver_is_a_failed_attempt(sf) -> None:
    from meterstream.deploy.ports import free_port

    endpoints.register(sf, TENANT, f"http://127.0.0.1:{free_port()}/nobody-listens")
    issued(sf, "inv-1")
    d = dispatcher(sf, Clock())
    try:
        d.run_once()
    finally:
        d.stop()
    failed = deliveries.list_deliveries(sf, TENANT)
    assert [(x.status, x.attempts, x.last_status) for x in failed] == [("pending", 1, None)] * 2
    assert all("ConnectError" in (x.last_error or "") for x in failed)


def test_filters_disabled_endpoints_and_tenants(sf, receiver) -> None:
    wants_paid = endpoints.register(sf, TENANT, receiver.url + "?paid", event_types=["invoice.paid"])
    everything = endpoints.register(sf, TENANT, receiver.url + "?all")
    off = endpoints.register(sf, TENANT, receiver.url + "?off")
    endpoints.disable(sf, TENANT, off.endpoint_id)
    endpoints.register(sf, "other-tenant", receiver.url + "?other")
    issued(sf, "inv-0", total="0.00")  # created, finalized, paid
    d = dispatcher(sf, Clock())
    try:
        d.run_once()
    finally:
        d.stop()
    by_endpoint = {}
    for x in deliveries.list_deliveries(sf, TENANT):
        by_endpoint.setdefault(x.endpoint_id, []).append(x.event_type)
    newest_first = ["invoice.paid", "invoice.finalized", "invoice.created"]
    assert by_endpoint == {wants_paid.endpoint_id: ["invoice.paid"], everything.endpoint_id: newest_first}
    assert deliveries.list_deliveries(sf, "other-tenant") == []
    assert len(receiver.requests) == 4
    assert [e.enabled for e in endpoints.list_endpoints(sf, TENANT)] == [True, True, False]


def test_endpoint_input_is_checked(sf) -> None:
    for url in ("ftp://example.com/x", "not a url", "http:///no-host"):
        with pytest.raises(Invalid) as exc:
            endpoints.register(sf, TENANT, url)
        assert exc.value.field == "url"
    with pytest.raises(Invalid) as exc:
        endpoints.register(sf, TENANT, "https://erp.example.com/hook", event_types=["invoice.sent"])
    assert exc.value.field == "event_types[0]"
    with pytest.raises(Invalid) as exc:
        endpoints.register(sf, TENANT, "https://erp.example.com/hook", secret="whsec_c2hvcnQ=")
    assert exc.value.field == "secret"
    with pytest.raises(NotFound):
        endpoints.disable(sf, "other-tenant", endpoints.register(sf, TENANT, "https://erp.example.com/h").endpoint_id)


class StuckProducer:
    """A broker that never acknowledges (the health check's case; the real broker is in test_webhook_kafka)."""

    def produce(self, *args, **kwargs) -> None:
        return None

    def flush(self, timeout: float) -> int:
        return 1

    def poll(self, timeout: float) -> int:
        return 0


def test_stalled_when_events_wait_and_nothing_moves(sf) -> None:
    clock = Clock()
    d = dispatcher(sf, clock, kafka=True, producer_factory=StuckProducer)
    d._topic_ready = True  # no broker to ask
    try:
        d.run_once()
        assert d.health() == (True, {"backlog": 0, "idle_seconds": 0.0, "stalled": False})
        issued(sf, "inv-1")
        d.run_once()  # fanned out (progress), not published: 2 events wait for Kafka
        clock.advance(30)
        d.run_once()
        ok, detail = d.health()
        assert ok and detail["backlog"] == 2
        clock.advance(31)
        d.run_once()
        ok, detail = d.health()
        assert not ok and detail["stalled"] and detail["backlog"] == 2 and detail["idle_seconds"] == 61.0
    finally:
        d.stop()


def test_the_dispatcher_announces_a_subscription_when_its_start_comes(sf) -> None:
    """A subscription dated two hours ahead (of the real clock, which the write reads): nothing at first; the
    dispatcher's clock two hours and a minute on: `subscription.started`, once, then every 30 s at most a look."""
    from entity_docs import customer, phase, plan, subscription

    from meterstream.entities.customers import put_customer
    from meterstream.entities.plans import publish_plan
    from meterstream.entities.subscriptions import create_subscription

    real = datetime.now(UTC).replace(microsecond=0)
    put_customer(sf, customer())
    publish_plan(sf, plan())
    create_subscription(sf, subscription("s1", phases=[phase(start=real + timedelta(hours=2))]))
    clock = Clock(real)
    d = dispatcher(sf, clock)
    try:
        assert d.run_once()["announced"] == 0
        clock.advance(2 * 3600 + 60)
        assert d.run_once()["announced"] == 1
        clock.advance(10)
        assert d.run_once()["announced"] == 0  # looked 10 s ago: not again yet
    finally:
        d.stop()
    types = [orjson.loads(e.body)["type"] for e in events(sf, "acme")]  # entity_docs.TENANT
    assert types.count("subscription.started") == 1
