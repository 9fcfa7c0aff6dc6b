"""The live catalog: effective-dated plan lookup (pure), and the compacted `entities` topic as a global table
(real Kafka). Prices below are hand-picked so the expected amounts are plain arithmetic."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from meterstream.ingest.topics import ENTITIES, ensure_entities_topic, entities_topic
from meterstream.processor.live_catalog import (
    NO_SUBSCRIPTION,
    CatalogView,
    EntityTable,
    LiveCatalog,
    is_waiting_for_subscription,
    no_subscription_reason,
)
from meterstream.rating import delta
from meterstream.rating.catalog import parse_catalog
from meterstream.schemas.entities import CustomerDoc, Phase, PlanVersionDoc, SubscriptionDoc, encode_change
from meterstream.schemas.settings import Settings

T = "acme"


def at(day: int, hour: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def plan(code: str, version: int, unit: str, meter: str = "api_calls", **kw) -> PlanVersionDoc:
    return PlanVersionDoc(
        tenant=T, code=code, version=version, name=code.title(), currency="USD",
        usage={meter: {"model": "unit", "unit_amount": unit}}, **kw,
    )  # fmt: skip


def sub(ext: str, customer: str, phases: list[Phase], version: int = 1, **kw) -> SubscriptionDoc:
    return SubscriptionDoc(tenant=T, external_id=ext, customer=customer, phases=phases, version=version, **kw)


def amount(p, quantity: str, meter: str = "api_calls") -> Decimal:
    return delta(p.prices[meter], None, Decimal(quantity))


def upgraded() -> EntityTable:
    """org-1 on basic@1 (0.01/call) from Nov 1, upgraded to pro@1 (0.005/call) on Nov 15 at 12:00."""
    table = EntityTable()
    table.apply(plan("basic", 1, "0.01"))
    table.apply(plan("pro", 1, "0.005"))
    table.apply(sub("s1", "org-1", [Phase(plan_code="basic", plan_version=1, start=at(1), end=at(15, 12)),
                                     Phase(plan_code="pro", plan_version=1, start=at(15, 12))]))  # fmt: skip
    return table


# --- effective dating (pure) -------------------------------------------------------------------------------


def test_an_event_is_rated_with_the_phase_in_effect_at_its_own_time() -> None:
    table = upgraded()
    before = table.plan_for(T, "org-1", "api_calls", at(15, 11))
    after = table.plan_for(T, "org-1", "api_calls", at(15, 12))  # the boundary belongs to the new phase
    assert before.id == "basic@1" and amount(before, "100") == Decimal("1.00")  # 100 x 0.01
    assert after.id == "pro@1" and amount(after, "100") == Decimal("0.500")  # 100 x 0.005
    assert table.plan_for(T, "org-1", "api_calls", at(31, 23, month=10)) is None  # before the subscription


def test_arrival_order_does_not_matter() -> None:
    docs = [
        plan("basic", 1, "0.01"),
        plan("pro", 1, "0.005"),
        sub("s1", "org-1", [Phase(plan_code="basic", plan_version=1, start=at(1))], version=1),
        sub(
            "s1",
            "org-1",
            [
                Phase(plan_code="basic", plan_version=1, start=at(1), end=at(15, 12)),
                Phase(plan_code="pro", plan_version=1, start=at(15, 12)),
            ],
            version=2,
        ),
    ]
    forward, backward = EntityTable(), EntityTable()
    for d in docs:
        forward.apply(d)
    for d in reversed(docs):
        backward.apply(d)
    for t in (at(2), at(15, 11), at(15, 12), at(30)):
        assert forward.plan_for(T, "org-1", "api_calls", t).id == backward.plan_for(T, "org-1", "api_calls", t).id
    assert backward.plan_for(T, "org-1", "api_calls", at(20)).id == "pro@1"


def test_an_older_version_arriving_late_is_ignored_and_does_not_bump_the_generation() -> None:
    table = upgraded()  # s1 version 1 with the upgrade
    newer = sub("s1", "org-1", [Phase(plan_code="basic", plan_version=1, start=at(1), end=at(10))], version=3)
    assert table.apply(newer) is True
    generation = table.generation
    stale = sub("s1", "org-1", [Phase(plan_code="pro", plan_version=1, start=at(1))], version=2)
    assert table.apply(stale) is False
    assert table.generation == generation
    assert table.plan_for(T, "org-1", "api_calls", at(12)) is None  # version 3 ended the subscription on the 10th


def test_a_pending_change_takes_effect_at_its_time_and_a_cancellation_ends_rating() -> None:
    table = EntityTable()
    table.apply(plan("basic", 1, "0.01"))
    table.apply(plan("basic", 2, "0.02"))
    # a change pending for Dec 1 (a new version of the plan), then canceled from Dec 10
    phases = [Phase(plan_code="basic", plan_version=1, start=at(1), end=at(1, month=12)),
              Phase(plan_code="basic", plan_version=2, start=at(1, month=12), end=at(10, month=12))]  # fmt: skip
    table.apply(sub("s1", "org-1", phases, status="canceled"))
    assert table.plan_for(T, "org-1", "api_calls", at(30, 23)).id == "basic@1"
    dec = table.plan_for(T, "org-1", "api_calls", at(1, month=12))
    assert dec.id == "basic@2" and amount(dec, "10") == Decimal("0.20")  # 10 x 0.02
    assert table.plan_for(T, "org-1", "api_calls", at(10, month=12)) is None


def test_overrides_addons_and_the_tenant_default() -> None:
    table = EntityTable()
    table.apply(plan("basic", 1, "0.01"))
    table.apply(plan("storage", 1, "0.0001", meter="gb_hours", addon=True, published_at=at(1, month=1)))
    table.apply(plan("storage", 2, "0.0003", meter="gb_hours", addon=True, published_at=at(20, month=12)))
    table.apply(sub("default", "*", [Phase(plan_code="basic", plan_version=1, start=at(1))]))
    own = Phase(plan_code="basic", plan_version=1, start=at(1), addons=["storage"],
                usage_overrides={"api_calls": {"model": "unit", "unit_amount": "0.008"}})  # fmt: skip
    table.apply(sub("s-org-1", "org-1", [own]))
    mine = table.plan_for(T, "org-1", "api_calls", at(5))
    assert mine.id == "basic@1" and amount(mine, "1000") == Decimal("8.000")  # the override: 1000 x 0.008
    other = table.plan_for(T, "org-2", "api_calls", at(5))  # no own subscription: the tenant's default
    assert other.id == "basic@1" and amount(other, "1000") == Decimal("10.00")  # 1000 x 0.01
    addon = table.plan_for(T, "org-1", "gb_hours", at(5))  # the add-on version published before the phase start
    assert addon.id == "storage@1" and amount(addon, "1000", "gb_hours") == Decimal("0.1000")
    unpriced = table.plan_for(T, "org-1", "sms", at(5))  # in effect but not priced: the caller says so
    assert unpriced is not None and not unpriced.rates("sms")


def test_deletion_wins_on_an_equal_version_in_either_order() -> None:
    live = plan("basic", 1, "0.01")
    gone = plan("basic", 1, "0.01", deleted=True)
    for order in ((live, gone), (gone, live)):
        table = EntityTable()
        for d in order:
            table.apply(d)
        assert table.plan_version(T, "basic", 1).deleted is True
    s1 = sub("s1", "org-1", [Phase(plan_code="basic", plan_version=1, start=at(1))])
    table.apply(s1)
    table.apply(sub("s1", "org-1", s1.phases, version=2, deleted=True))
    assert table.plan_for(T, "org-1", "api_calls", at(5)) is None


def test_a_broken_message_is_skipped_not_fatal() -> None:
    table = EntityTable()
    key, value = encode_change(plan("basic", 1, "0.01"))
    assert table.apply_message(key, b"{not json") is False
    assert table.apply_message(b"wrong-key", value) is False
    assert table.apply_message(key, value) is True
    assert table.apply_message(key, None) is True  # a tombstone forgets the key
    assert table.plan_version(T, "basic", 1) is None


def test_view_prefers_live_entities_and_falls_back_to_the_file_catalog() -> None:
    meters = {"api_calls": {"model": "unit", "unit_amount": "1"}}
    file_catalog = parse_catalog(
        {
            "plans": [{"id": "file-plan", "currency": "USD", "meters": meters}],
            "assignments": [{"tenant": T, "customer": "*", "plan": "file-plan"}],
        }
    )
    view = CatalogView(upgraded(), file_catalog)
    assert view.plan_for(T, "org-1", "api_calls", at(20)).id == "pro@1"
    assert view.plan_for(T, "org-1", "api_calls", at(20, month=10)).id == "file-plan"  # before the subscription
    assert view.plan_for(T, "org-9", "api_calls", at(20)).id == "file-plan"
    assert CatalogView(upgraded(), None).plan_for(T, "org-9", "api_calls", at(20)) is None


def test_usage_is_totalled_per_the_subscription_period_in_the_customer_time_zone() -> None:
    """org-1 (upgraded(): from Nov 1 UTC) billed in Tokyo (UTC+9) on calendar months: 2026-11-30T16:00Z is
    December 1st 01:00 in Tokyo, so its period is `2026-12`; 14:00Z (23:00 local) is still `2026-11`.
    org-2 on the anniversary of Nov 15 12:00 UTC (its local day in UTC: the 15th): Dec 3 is in the period
    that began `2026-11-15`. A customer without a subscription, or a meter no live plan prices: None (the
    UTC month applies)."""
    table = upgraded()
    table.apply(CustomerDoc(tenant=T, external_id="org-1", name="Org 1", version=1, timezone="Asia/Tokyo"))
    assert table.period_for(T, "org-1", "api_calls", datetime(2026, 11, 30, 16, tzinfo=UTC)) == "2026-12"
    assert table.period_for(T, "org-1", "api_calls", datetime(2026, 11, 30, 14, tzinfo=UTC)) == "2026-11"
    table.apply(sub("s2", "org-2", [Phase(plan_code="basic", plan_version=1, start=at(15, 12))],
                    billing_anchor="anniversary"))  # fmt: skip
    assert table.period_for(T, "org-2", "api_calls", at(3, month=12)) == "2026-11-15"
    assert table.period_for(T, "org-3", "api_calls", at(3)) is None
    assert table.period_for(T, "org-1", "storage_gb", at(20)) is None


def test_reason_text() -> None:
    reason = no_subscription_reason(T, "org-1", at(3, 10))
    assert reason == "no subscription at the event's time: customer acme/org-1 at 2026-11-03T10:00:00+00:00"
    assert reason.startswith(NO_SUBSCRIPTION) and is_waiting_for_subscription(reason)
    assert is_waiting_for_subscription("no plan for customer acme/org-1")
    assert not is_waiting_for_subscription("plan 'basic@1' does not price meter 'sms'")


# --- the topic as a global table (real Kafka) --------------------------------------------------------------


@pytest.fixture
def topic_settings(kafka_settings: Settings) -> Settings:
    s = kafka_settings.model_copy(update={"topic_prefix": f"lc-{uuid.uuid4().hex[:8]}-"})
    ensure_entities_topic(s)
    return s


def produce(settings: Settings, docs) -> None:
    producer = Producer({"bootstrap.servers": settings.bootstrap, "enable.idempotence": True, "acks": "all"})
    for d in docs:
        key, value = encode_change(d) if not isinstance(d, tuple) else d
        producer.produce(entities_topic(settings), key=key, value=value)
    assert producer.flush(30) == 0


@pytest.mark.kafka
def test_the_topic_is_compacted_with_one_partition(topic_settings: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": topic_settings.bootstrap})
    name = entities_topic(topic_settings)
    assert name == f"{topic_settings.topic_prefix}{ENTITIES}"
    assert len(admin.list_topics(name, timeout=10).topics[name].partitions) == 1
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    config = admin.describe_configs([resource])[resource].result()
    assert config["cleanup.policy"].value == "compact"


@pytest.mark.kafka
def test_start_reads_the_current_state_and_updates_arrive_without_waiting(topic_settings: Settings) -> None:
    produce(
        topic_settings,
        [
            plan("basic", 1, "0.01"),
            plan("pro", 1, "0.005"),
            CustomerDoc(tenant=T, external_id="org-1", name="Org One", version=1),
            sub("s1", "org-1", [Phase(plan_code="basic", plan_version=1, start=at(1))], version=1),
            sub(
                "s1",
                "org-1",
                [
                    Phase(plan_code="basic", plan_version=1, start=at(1), end=at(15, 12)),
                    Phase(plan_code="pro", plan_version=1, start=at(15, 12)),
                ],
                version=2,
            ),
            sub("s1", "org-1", [Phase(plan_code="basic", plan_version=1, start=at(1))], version=1),  # a late repeat
        ],
    )
    live = LiveCatalog(topic_settings)
    try:
        live.start(timeout=30)
        assert live.table.customer(T, "org-1").name == "Org One"
        assert live.plan_for(T, "org-1", "api_calls", at(20)).id == "pro@1"  # version 2 kept, the repeat ignored
        generation = live.generation
        t0 = time.monotonic()
        assert live.poll_updates() == 0 and time.monotonic() - t0 < 0.1  # nothing new: returns at once
        produce(topic_settings, [sub("s1", "org-1", [Phase(plan_code="basic", plan_version=1, start=at(1),
                                                           end=at(10))], version=3)])  # fmt: skip
        deadline = time.monotonic() + 5
        while live.generation == generation and time.monotonic() < deadline:
            live.poll_updates()
            time.sleep(0.05)
        assert live.generation != generation
        assert live.plan_for(T, "org-1", "api_calls", at(20)) is None  # canceled from the 10th
    finally:
        live.close()


@pytest.mark.kafka
def test_a_restarted_catalog_reads_the_same_state_and_catch_up_sees_acknowledged_changes(
    topic_settings: Settings,
) -> None:
    produce(topic_settings, [plan("basic", 1, "0.01"),
                             sub("s1", "org-1", [Phase(plan_code="basic", plan_version=1, start=at(1))])])  # fmt: skip
    first = LiveCatalog(topic_settings)
    first.start()
    first.close()
    produce(topic_settings, [sub("s1", "org-1", [Phase(plan_code="basic", plan_version=1, start=at(1))],
                                 version=2, deleted=True)])  # fmt: skip
    second = LiveCatalog(topic_settings)
    try:
        second.start()
        assert second.plan_for(T, "org-1", "api_calls", at(5)) is None  # the deletion is part of the state
        produce(topic_settings, [sub("s2", "org-1", [Phase(plan_code="basic", plan_version=1, start=at(1))])])
        assert second.catch_up(timeout=10) == 1  # acknowledged before the call: applied by it
        assert second.plan_for(T, "org-1", "api_calls", at(5)).id == "basic@1"
    finally:
        second.close()
