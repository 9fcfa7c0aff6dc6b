"""update_subscription (SQLite and PostgreSQL): a subscription renamed, its end moved (shortened, extended,
removed), its start moved before it starts, and what is refused. Dates in 2027 are in the future of the
machine's clock (the rules depend on now); those of 2026-01 are in its past."""

from __future__ import annotations

import orjson
import pytest
from entity_docs import TENANT, at, customer, outbox_count, phase, plan, subscription

from meterstream.entities.common import Conflict, Invalid
from meterstream.entities.customers import put_customer
from meterstream.entities.plans import publish_plan
from meterstream.entities.subscriptions import (
    cancel_subscription,
    change_plan,
    create_subscription,
    get_subscription,
    update_subscription,
)
from meterstream.webhooks.outbox import events


@pytest.fixture
def store(sf):
    """Customer c1 (USD), plans basic@1 and pro@1."""
    put_customer(sf, customer(currency="USD"))
    publish_plan(sf, plan())
    publish_plan(sf, plan("pro", usage={"api_calls": {"model": "unit", "unit_amount": "0.0005"}}))
    return sf


def _spans(doc) -> list[tuple]:  # type: ignore[no-untyped-def,type-arg]
    return [(p.plan_code, p.start, p.end) for p in doc.phases]


def test_the_end_is_shortened_extended_and_removed(store) -> None:
    create_subscription(store, subscription(phases=[phase(start=at(1))]))
    change_plan(store, TENANT, "s1", "pro", at(1, month=3, year=2027))  # a pending plan change
    before = outbox_count(store)

    shortened = update_subscription(store, TENANT, "s1", end=at(1, month=2, year=2027))
    # the pending change starts after the new end: dropped; the phase in effect ends there
    assert _spans(shortened) == [("basic", at(1), at(1, month=2, year=2027))]
    assert (shortened.status, shortened.version) == ("active", 3)

    extended = update_subscription(store, TENANT, "s1", end=at(1, month=6, year=2027), expected_version=3)
    assert _spans(extended) == [("basic", at(1), at(1, month=6, year=2027))]

    renamed = update_subscription(store, TENANT, "s1", name="Main")
    assert renamed.name == "Main" and _spans(renamed) == _spans(extended)

    open_ended = update_subscription(store, TENANT, "s1", end=None)
    assert _spans(open_ended) == [("basic", at(1), None)] and open_ended.name == "Main"
    assert get_subscription(store, TENANT, "s1") == open_ended
    assert outbox_count(store) == before + 4  # each write reaches the processors' live catalog

    with pytest.raises(Conflict) as stale:
        update_subscription(store, TENANT, "s1", name="x", expected_version=3)
    assert stale.value.field == "version"


def test_the_start_moves_only_before_it_comes(store) -> None:
    create_subscription(store, subscription(phases=[phase(start=at(1, year=2027), end=at(1, month=3, year=2027))]))
    moved = update_subscription(store, TENANT, "s1", start=at(15, year=2027))
    assert _spans(moved) == [("basic", at(15, year=2027), at(1, month=3, year=2027))] and moved.status == "pending"
    with pytest.raises(Invalid) as past_its_end:
        update_subscription(store, TENANT, "s1", start=at(1, month=3, year=2027))
    assert past_its_end.value.field == "start"

    put_customer(store, customer("c2", currency="USD"))
    create_subscription(store, subscription("s2", "c2", phases=[phase(start=at(1))]))
    with pytest.raises(Invalid) as started:
        update_subscription(store, TENANT, "s2", start=at(1, year=2027))
    assert started.value.field == "start" and "started" in started.value.reason


def test_what_is_refused(store) -> None:
    create_subscription(store, subscription(phases=[phase(start=at(1), end=at(1, month=6))]))  # ended in June 2026
    with pytest.raises(Invalid) as ended:
        update_subscription(store, TENANT, "s1", end=at(1, year=2027))
    assert ended.value.field == "end" and "ended" in ended.value.reason
    assert update_subscription(store, TENANT, "s1", name="Old").name == "Old"  # a name may still change

    put_customer(store, customer("c2", currency="USD"))
    create_subscription(store, subscription("s2", "c2", phases=[phase(start=at(1, month=2))]))
    with pytest.raises(Invalid) as not_after_start:
        update_subscription(store, TENANT, "s2", end=at(1, month=2))
    assert not_after_start.value.field == "end"
    with pytest.raises(Invalid) as invoiced:  # January to March 2026 invoiced: an end there would rewrite them
        update_subscription(store, TENANT, "s2", end=at(15, month=3), finalized_until=at(1, month=4))
    assert invoiced.value.field == "end" and "finalized" in invoiced.value.reason

    # c2 on basic again from July 2027: s2 may not be extended over it
    update_subscription(store, TENANT, "s2", end=at(1, month=6, year=2027))
    create_subscription(store, subscription("s3", "c2", phases=[phase(start=at(1, month=7, year=2027))]))
    with pytest.raises(Conflict) as overlap:
        update_subscription(store, TENANT, "s2", end=at(1, month=8, year=2027))
    assert overlap.value.field == "phases[0].plan_code"


def test_a_canceled_subscription_stays_canceled_while_it_has_an_end(store) -> None:
    create_subscription(store, subscription(phases=[phase(start=at(1))]))
    assert cancel_subscription(store, TENANT, "s1", at(1, month=2, year=2027)).status == "canceled"
    assert update_subscription(store, TENANT, "s1", end=at(1, month=4, year=2027)).status == "canceled"
    assert update_subscription(store, TENANT, "s1", end=None).status == "active"


def test_an_end_moved_into_the_past_terminates_it_once(store) -> None:
    """An end set to an instant already past (and not invoiced) terminates it in the write: the change's
    `subscription.updated`, then one `subscription.terminated`, after its `subscription.started`."""
    create_subscription(store, subscription(phases=[phase(start=at(1))]))
    ended = update_subscription(store, TENANT, "s1", end=at(1, month=6))
    assert ended.status == "terminated"
    types = [orjson.loads(e.body)["type"] for e in events(store, TENANT)]
    assert [t for t in types if t.startswith("subscription.")] == [
        "subscription.started", "subscription.updated", "subscription.terminated"]  # fmt: skip


def test_every_change_of_an_existing_subscription_is_announced_as_updated(store) -> None:
    """`subscription.updated` for a rename, a moved end and a plan change, each with the subscription as the write
    left it (status, version, end, plan in effect); not for its creation, nor for a write that changes nothing."""
    create_subscription(store, subscription(phases=[phase(start=at(1, year=2099))]))  # pending: starts in 2099
    update_subscription(store, TENANT, "s1", name="Renamed")
    update_subscription(store, TENANT, "s1", name="Renamed")  # the same again: nothing changes
    update_subscription(store, TENANT, "s1", end=at(1, month=6, year=2100))
    change_plan(store, TENANT, "s1", "pro", at(1, month=3, year=2099))
    change_plan(store, TENANT, "s1", "pro", at(1, month=3, year=2099))  # the same again: nothing changes
    updates = [orjson.loads(e.body)["data"] for e in events(store, TENANT)
               if orjson.loads(e.body)["type"] == "subscription.updated"]  # fmt: skip
    assert [(d["subscription"], d["status"], d["version"], d["ended_at"]) for d in updates] == [
        ("s1", "pending", 2, None), ("s1", "pending", 3, "2100-06-01T00:00:00.000000Z"),
        ("s1", "pending", 4, "2100-06-01T00:00:00.000000Z")]  # fmt: skip
    assert [e for e in events(store, TENANT) if orjson.loads(e.body)["type"] == "subscription.started"] == []
