"""The processor's alerts reach the webhooks: webhooks/notifications_relay.py reads the real `notifications` topic
and writes each balance / credit-limit notification once as a webhook event (a repeat, or a second read of the
whole topic, writes nothing more), skips dunning notifications (invoice_emitter/dunning_run.py writes their events
itself) and unknown kinds, passes over an unreadable message; the dispatcher then delivers the event to an endpoint."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from fastapi.testclient import TestClient

from meterstream.api.app import create_app
from meterstream.ingest.topics import ensure_provisioning_topics
from meterstream.schemas.provisioning import NOTIFICATIONS, Notification, customer_key, encode
from meterstream.schemas.settings import Settings
from meterstream.webhooks import endpoints
from meterstream.webhooks.dispatcher import Dispatcher
from meterstream.webhooks.notifications_relay import NotificationsRelay, write_once
from meterstream.webhooks.outbox import events
from meterstream.webhooks.signing import verify

TENANT = "acme-t"


def note(id: str, kind: str, customer: str = "c-1", **data: str) -> Notification:
    return Notification(id=id, tenant=TENANT, customer=customer, kind=kind, data=data, at="2026-12-01T10:00:00Z")


CROSSED = note("a" * 32, "balance.threshold_crossed", balance="4.00", currency="EUR", threshold="balance<5")
EXHAUSTED = note("b" * 32, "balance.exhausted", customer="c-2", balance="0.00", currency="EUR", used="25.00")
REMINDER = note("c" * 32, "dunning.reminder", invoice="ACME-2026-000001")
OTHER = note("d" * 32, "balance.refilled", balance="10.00")


def produce(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    ensure_provisioning_topics(settings)
    p = Producer({"bootstrap.servers": settings.bootstrap})
    for key, value in messages:
        p.produce(settings.topic(NOTIFICATIONS), value, key)
    assert p.flush(10) == 0


def drain(relay: NotificationsRelay, expected: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while sum(relay.totals.values()) < expected and time.monotonic() < deadline:
        relay.run_once()
    assert sum(relay.totals.values()) == expected, relay.totals


def test_write_once_skips_what_is_written(sf) -> None:
    assert write_once(sf, [CROSSED, CROSSED, REMINDER]) == {"written": 1, "repeated": 1, "dunning": 1,
                                                             "other_kind": 0}  # fmt: skip
    assert write_once(sf, [CROSSED, EXHAUSTED, OTHER]) == {"written": 1, "repeated": 1, "dunning": 0,
                                                            "other_kind": 1}  # fmt: skip
    stored = events(sf, TENANT)
    assert [(e.event_id, e.type, e.key) for e in stored] == [
        ("msg_" + "a" * 32, "balance.threshold_crossed", "acme-t/c-1"),
        ("msg_" + "b" * 32, "balance.exhausted", "acme-t/c-2"),
    ]
    body = orjson.loads(stored[1].body)
    assert body["id"] == "msg_" + "b" * 32 and body["type"] == "balance.exhausted"
    assert body["data"] == {"object": "notification", "id": "b" * 32, "customer": "c-2", "at": "2026-12-01T10:00:00Z",
                            "balance": "0.00", "currency": "EUR", "used": "25.00"}  # fmt: skip


@pytest.mark.kafka
def test_relayed_once_from_the_topic_and_delivered(kafka_settings: Settings, sf, receiver) -> None:
    settings = kafka_settings.model_copy(update={"topic_prefix": f"nr-{uuid.uuid4().hex[:8]}-", "partitions": 2})
    ep = endpoints.register(sf, TENANT, receiver.url, event_types=["balance.exhausted"])
    msgs = [(customer_key(TENANT, n.customer), encode(n)) for n in (CROSSED, EXHAUSTED, REMINDER, OTHER)]
    msgs += [(customer_key(TENANT, "c-1"), encode(CROSSED)),  # the processor repeated a batch after a crash
             (customer_key(TENANT, "c-3"), b'{"id": 1, "kind": "balance.exhausted"}')]  # fmt: skip
    produce(settings, msgs)
    relay = NotificationsRelay(settings, sf)
    try:
        drain(relay, 6)
        assert relay.totals == {"written": 2, "repeated": 1, "dunning": 1, "other_kind": 1, "unreadable": 1}
        assert relay.health()[0]
    finally:
        relay.close()
    assert sorted(e.type for e in events(sf, TENANT)) == ["balance.exhausted", "balance.threshold_crossed"]
    # the group's offsets lost (a new group reads the topic again): nothing written twice
    again = NotificationsRelay(settings, sf, group=f"{relay.group}-again")
    try:
        drain(again, 6)
        assert again.totals["written"] == 0 and again.totals["repeated"] == 3
    finally:
        again.close()
    assert len(events(sf, TENANT)) == 2
    d = Dispatcher(settings, sf)
    try:
        d.run_once()
    finally:
        d.stop()
    assert len(receiver.requests) == 1  # only the type the endpoint asked for, once
    body = orjson.loads(receiver.requests[0][1])
    assert body["type"] == "balance.exhausted" and body["data"]["balance"] == "0.00"
    assert verify(ep.secret, *receiver.requests[0]) == "msg_" + "b" * 32  # signed, the deterministic id


@pytest.mark.kafka
def test_the_api_process_runs_the_relay(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings.model_copy(update={"home": tmp_path, "topic_prefix": f"na-{uuid.uuid4().hex[:8]}-",
                                                 "database_url": None, "clickhouse_http_port": 0})  # fmt: skip
    app = create_app(settings)
    with TestClient(app) as client:
        assert isinstance(app.state.notifications, NotificationsRelay)
        produce(settings, [(customer_key(TENANT, "c-2"), encode(EXHAUSTED))])
        deadline = time.monotonic() + 20
        while not events(app.state.sessions, TENANT) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e.event_id for e in events(app.state.sessions, TENANT)] == ["msg_" + "b" * 32]
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["checks"]["notifications"]["ok"] is True
    assert app.state.notifications._thread is None  # stopped with the app: joined, the thread has ended


class FakeMessage:
    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def value(self) -> bytes:
        return self._value

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class FakeConsumer:
    def __init__(self, _config: dict) -> None:
        self.batches = [[FakeMessage(encode(CROSSED), 0), FakeMessage(encode(EXHAUSTED), 1)]]
        self.commits = 0

    def subscribe(self, _topics: list[str]) -> None:
        return None

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        return self.batches.pop(0) if self.batches else []

    def commit(self, asynchronous: bool) -> None:
        self.commits += 1

    def close(self) -> None:
        return None


def test_a_store_failure_keeps_the_batch_and_commits_nothing(sf, monkeypatch: pytest.MonkeyPatch) -> None:
    from meterstream.webhooks import notifications_relay

    relay = NotificationsRelay(Settings(topic_prefix="x-"), sf, consumer_factory=FakeConsumer)
    relay._subscribed = True  # no broker: the fake consumer stands for it
    real = notifications_relay.write_once
    calls = []

    def failing_once(sessions, notes):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return real(sessions, notes)

    monkeypatch.setattr(notifications_relay, "write_once", failing_once)
    with pytest.raises(RuntimeError):
        relay.run_once()
    assert relay._consumer.commits == 0 and events(sf, TENANT) == [] and relay.health()[1]["waiting"] == 2
    assert relay.run_once() == 2  # the same two, not a new read
    assert relay._consumer.commits == 1
    assert [e.type for e in events(sf, TENANT)] == ["balance.threshold_crossed", "balance.exhausted"]


HELD = note("e" * 32, "session.held", customer="c-4", session_id="s-9", meter="voice", waiting_for="3")
SOFT = note("f" * 32, "credit_limit.soft_reached", customer="c-5", usage="80.00", limit="100.00", currency="EUR")
NEW_KINDS = ("credit_limit.threshold_crossed", "credit_limit.soft_reached", "commitment.threshold_crossed",
             "session.held", "session.released", "session.release_failed")  # fmt: skip


def test_the_processors_notification_kinds_are_webhook_event_types() -> None:
    from meterstream.processor import balances, sessions
    from meterstream.webhooks import events as types

    assert set(NEW_KINDS) <= set(types.EVENT_TYPES)
    # the processor's spelling of each kind is the webhooks' (webhooks/events.py spells them to stay light)
    ours = (types.CREDIT_LIMIT_THRESHOLD_CROSSED, types.CREDIT_LIMIT_SOFT_REACHED, types.COMMITMENT_THRESHOLD_CROSSED)
    assert (balances.LIMIT_LEVEL, balances.SOFT_NOTE, balances.COMMITMENT_LEVEL) == ours
    assert (sessions.HELD, sessions.RELEASED, sessions.RELEASE_FAILED) == (
        types.SESSION_HELD, types.SESSION_RELEASED, types.SESSION_RELEASE_FAILED)  # fmt: skip


def test_a_session_and_a_credit_limit_notification_reach_an_endpoint(sf, receiver) -> None:
    from datetime import UTC, datetime

    ep = endpoints.register(sf, TENANT, receiver.url, event_types=["session.held", "credit_limit.soft_reached"])
    assert write_once(sf, [HELD, SOFT, CROSSED]) == {"written": 3, "repeated": 0, "dunning": 0, "other_kind": 0}
    assert [(e.type, e.key) for e in events(sf, TENANT)] == [("session.held", "acme-t/c-4"),
                                                             ("credit_limit.soft_reached", "acme-t/c-5"),
                                                             ("balance.threshold_crossed", "acme-t/c-1")]  # fmt: skip
    d = Dispatcher(Settings(), sf, kafka=False, now=lambda: datetime.now(UTC))
    try:
        d.run_once()
    finally:
        d.stop()
    bodies = sorted((orjson.loads(b) for _, b in receiver.requests), key=lambda b: b["type"])
    assert [(b["type"], b["id"]) for b in bodies] == [("credit_limit.soft_reached", "msg_" + "f" * 32),
                                                      ("session.held", "msg_" + "e" * 32)]  # fmt: skip
    assert bodies[1]["data"] == {"object": "notification", "id": "e" * 32, "customer": "c-4",
                                 "at": "2026-12-01T10:00:00Z", "session_id": "s-9", "meter": "voice",
                                 "waiting_for": "3"}  # fmt: skip
    assert {verify(ep.secret, *r) for r in receiver.requests} == {"msg_" + "e" * 32, "msg_" + "f" * 32}


RELEASED = note("1" * 32, "session.released", customer="c-4", session_id="s-9", meter="voice", records="3")
FAILED = note("2" * 32, "session.release_failed", customer="c-4", session_id="s-9", meter="voice")


def _delivered(sf, receiver) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(endpoint path, event type) of every POST one dispatcher pass makes."""
    from datetime import UTC, datetime

    d = Dispatcher(Settings(), sf, kafka=False, now=lambda: datetime.now(UTC))
    try:
        d.run_once()
    finally:
        d.stop()
    got = [(orjson.loads(body)["id"], orjson.loads(body)["type"]) for _, body in receiver.requests]
    receiver.requests.clear()
    return sorted(got)


def test_session_kinds_are_opt_in(sf, receiver) -> None:  # type: ignore[no-untyped-def]
    """An endpoint of every type (no event_types) does not get the per-record session kinds, and while no enabled
    endpoint of the tenant names a session kind its notifications are not stored at all (no outbox row, so no
    delivery and no invoice-events message); once an endpoint names session.held, session.held (only) is stored
    and goes to that endpoint alone."""
    everything = endpoints.register(sf, TENANT, receiver.url)
    assert everything.event_types == ()
    # another tenant's endpoint naming the kind, and a disabled one of this tenant, do not count
    endpoints.register(sf, "other-t", receiver.url, event_types=["session.held"])
    off = endpoints.register(sf, TENANT, receiver.url, event_types=["session.held"])
    endpoints.disable(sf, TENANT, off.endpoint_id)
    assert write_once(sf, [HELD, CROSSED, RELEASED]) == {"written": 1, "repeated": 0, "dunning": 0, "other_kind": 0,
                                                         "unsubscribed": 2}  # fmt: skip
    assert [e.type for e in events(sf, TENANT)] == ["balance.threshold_crossed"]
    assert _delivered(sf, receiver) == [("msg_" + "a" * 32, "balance.threshold_crossed")]

    endpoints.register(sf, TENANT, receiver.url, event_types=["session.held"])
    held2 = note("3" * 32, "session.held", customer="c-4", session_id="s-10", meter="voice", waiting_for="7")
    assert write_once(sf, [held2, RELEASED, FAILED]) == {"written": 1, "repeated": 0, "dunning": 0, "other_kind": 0,
                                                         "unsubscribed": 2}  # fmt: skip
    assert [e.type for e in events(sf, TENANT)] == ["balance.threshold_crossed", "session.held"]
    assert _delivered(sf, receiver) == [("msg_" + "3" * 32, "session.held")]  # once: the naming endpoint's


def test_an_endpoint_wants_session_kinds_only_by_name() -> None:
    from datetime import UTC, datetime

    from meterstream.webhooks.events import EVENT_TYPES, subscribed

    now = datetime(2026, 12, 1, tzinfo=UTC)
    every = endpoints.Endpoint(TENANT, "ep_1", "http://x/", "whsec_x", (), "", True, now, now)
    named = endpoints.Endpoint(TENANT, "ep_2", "http://x/", "whsec_x", ("session.released", "invoice.paid"), "",
                               True, now, now)  # fmt: skip
    assert [t for t in EVENT_TYPES if not every.wants(t)] == ["session.held", "session.released",
                                                              "session.release_failed", "events.errors"]  # fmt: skip
    assert [t for t in EVENT_TYPES if named.wants(t)] == ["invoice.paid", "session.released"]
    assert not subscribed((), "session.held") and subscribed((), "credit_limit.soft_reached")
