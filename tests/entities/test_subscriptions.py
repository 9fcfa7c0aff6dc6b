"""Subscriptions (SQLite and PostgreSQL): phases, overlap rule, plan changes, cancellation, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from entity_docs import TENANT, at, customer, outbox_count, phase, plan, subscription
from hypothesis import given
from hypothesis import strategies as st

from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.customers import put_customer
from meterstream.entities.plans import delete_plan, publish_plan
from meterstream.entities.subscriptions import (
    cancel_subscription,
    change_plan,
    create_subscription,
    get_subscription,
    list_subscriptions,
)

UNIT = {"model": "unit", "unit_amount": "0.0005"}


@pytest.fixture
def store(sf):
    """Customer c1 (USD), plans basic@1, pro@1 (USD), an add-on `storage` and a EUR plan."""
    put_customer(sf, customer(currency="USD"))
    publish_plan(sf, plan())
    publish_plan(sf, plan("pro", usage={"api_calls": UNIT}))
    publish_plan(sf, plan("storage", addon=True, usage={"gb_hours": UNIT}, fixed=[]))
    publish_plan(sf, plan("euro", currency="EUR"))
    return sf


def test_create_get_list(store) -> None:
    created = create_subscription(store, subscription(version=9, name="Main"))
    assert created.version == 1 and created.status == "active" and created.name == "Main"
    assert get_subscription(store, TENANT, "s1") == created
    put_customer(store, customer("c2"))
    create_subscription(store, subscription("s2", "c2"))
    assert [s.external_id for s in list_subscriptions(store, TENANT)] == ["s1", "s2"]
    assert [s.external_id for s in list_subscriptions(store, TENANT, customer="c2")] == ["s2"]
    assert list_subscriptions(store, "globex") == []
    with pytest.raises(NotFound):
        get_subscription(store, TENANT, "nope")
    with pytest.raises(Conflict) as exc:
        create_subscription(store, subscription())
    assert exc.value.field == "external_id"


def test_times_are_stored_in_utc(store) -> None:
    berlin = timezone(timedelta(hours=1))
    created = create_subscription(store, subscription(phases=[phase(start=datetime(2026, 1, 1, 1, tzinfo=berlin))]))
    assert created.phases[0].start == at(1) and created.phases[0].start.utcoffset() == timedelta(0)
    assert get_subscription(store, TENANT, "s1").phases[0].start == at(1)


def test_tenant_default_subscription(store) -> None:
    created = create_subscription(store, subscription("default", "*"))
    assert created.customer == "*"
    with pytest.raises(Conflict):  # the default subscription follows the overlap rule too
        create_subscription(store, subscription("default-2", "*", phases=[phase(start=at(5))]))


def test_overlap_on_one_customer_and_plan_is_a_conflict(store) -> None:
    create_subscription(store, subscription(phases=[phase(start=at(1), end=at(1, month=3))]))
    before = outbox_count(store)
    with pytest.raises(Conflict) as exc:
        create_subscription(store, subscription("s2", phases=[phase(start=at(28, month=2))]))
    assert exc.value.field == "phases[0].plan_code" and "s1" in str(exc.value)
    assert outbox_count(store) == before and [s.external_id for s in list_subscriptions(store, TENANT)] == ["s1"]
    # back to back ([Jan 1, Mar 1) then [Mar 1, ...)) does not overlap; another plan may overlap
    create_subscription(store, subscription("s2", phases=[phase(start=at(1, month=3))]))
    create_subscription(store, subscription("s3", phases=[phase("pro", start=at(15))]))
    put_customer(store, customer("c2"))
    create_subscription(store, subscription("s4", "c2"))  # another customer on the same plan


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (subscription(customer_id="ghost"), "customer"),
        (subscription(phases=[phase("gold")]), "phases[0].plan_code"),
        (subscription(phases=[phase(version=2)]), "phases[0].plan_version"),
        (subscription(phases=[phase(version=0)]), "phases[0].plan_version"),
        (subscription(phases=[phase("storage")]), "phases[0].plan_code"),
        (subscription(phases=[phase("euro")]), "phases[0].plan_code"),
        (subscription(phases=[phase(start=datetime(2026, 1, 1))]), "phases[0].start"),
        (subscription(phases=[phase(start=at(5), end=at(5))]), "phases[0].end"),
        (subscription(phases=[phase(start=at(1), end=at(10)), phase("pro", start=at(9))]), "phases[1].start"),
        (subscription(phases=[phase(start=at(1)), phase("pro", start=at(9))]), "phases[0].end"),
        (subscription(phases=[]), "phases"),
        (subscription(billing_anchor="weekly"), "billing_anchor"),
        (subscription(phases=[phase(addons=["pro"])]), "phases[0].addons[0]"),
        (subscription(phases=[phase(addons=["storage", "storage"])]), "phases[0].addons"),
        (subscription(phases=[phase(usage_overrides={"sms": UNIT})]), "phases[0].usage_overrides.sms"),
        (subscription(phases=[phase(usage_overrides={"api_calls": {"model": "unit", "unit_amount": "-1"}})]),
         "phases[0].usage_overrides.api_calls.unit_amount"),
        (subscription(phases=[phase(fixed_overrides={"base": Decimal("5.001")})]), "phases[0].fixed_overrides.base"),
        (subscription(phases=[phase(fixed_overrides={"setup": Decimal("5")})]), "phases[0].fixed_overrides.setup"),
        (subscription(external_id=""), "external_id"),
    ],
)  # fmt: skip
def test_bad_subscription_names_the_field_and_writes_nothing(store, doc, field) -> None:
    before = outbox_count(store)
    with pytest.raises(Invalid) as exc:
        create_subscription(store, doc)
    assert exc.value.field == field, str(exc.value)
    assert outbox_count(store) == before and list_subscriptions(store, TENANT) == []


def test_addons_and_overrides_are_kept(store) -> None:
    doc = subscription(phases=[phase(addons=["storage"], usage_overrides={"api_calls": UNIT},
                                     fixed_overrides={"base": Decimal("8.00")})])  # fmt: skip
    created = create_subscription(store, doc)
    assert created.phases[0].addons == ["storage"]
    assert created.phases[0].usage_overrides == {"api_calls": UNIT}
    assert created.phases[0].fixed_overrides == {"base": Decimal("8.00")}


def test_mid_cycle_upgrade_splits_the_phase(store) -> None:
    create_subscription(store, subscription(phases=[phase(start=at(1), addons=["storage"])]))
    changed = change_plan(store, TENANT, "s1", "pro", at(15, hour=12), expected_version=1)
    assert changed.version == 2
    assert [(p.plan_code, p.plan_version, p.start, p.end) for p in changed.phases] == [
        ("basic", 1, at(1), at(15, hour=12)),
        ("pro", 1, at(15, hour=12), None),
    ]
    assert changed.phases[1].addons == ["storage"]
    assert changed.phase_at(at(15, hour=11)).plan_code == "basic"
    assert changed.phase_at(at(15, hour=12)).plan_code == "pro"  # [start, end): the boundary belongs to pro
    with pytest.raises(Conflict) as exc:
        change_plan(store, TENANT, "s1", "basic", at(20), expected_version=1)
    assert exc.value.field == "version"


def test_pending_change_is_replaced_by_a_later_decision(store) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    create_subscription(store, subscription(phases=[phase(start=now - timedelta(days=10))]))
    pending = change_plan(store, TENANT, "s1", "pro", now + timedelta(days=20))
    assert [p.plan_code for p in pending.phases] == ["basic", "pro"] and pending.status == "active"
    # before the pending change takes effect, move to a new version of basic from tomorrow instead
    publish_plan(store, plan(usage={"api_calls": UNIT}))
    moved = change_plan(store, TENANT, "s1", "basic", now + timedelta(days=1))
    assert [(p.plan_code, p.plan_version) for p in moved.phases] == [("basic", 1), ("basic", 2)]
    assert moved.phases[1].end is None  # the pending move to pro is gone


def test_change_at_a_phase_start_replaces_that_phase_and_repeats_change_nothing(store) -> None:
    create_subscription(store, subscription(phases=[phase(start=at(1))]))
    changed = change_plan(store, TENANT, "s1", "pro", at(1))
    assert [(p.plan_code, p.start) for p in changed.phases] == [("pro", at(1))]
    again = change_plan(store, TENANT, "s1", "pro", at(1))
    assert again.version == changed.version  # already on pro@1 from then on: nothing written


def test_version_bump_keeps_the_overrides_the_new_version_still_prices(store) -> None:
    create_subscription(
        store, subscription(phases=[phase(usage_overrides={"api_calls": UNIT}, fixed_overrides={"base": Decimal("8")})])
    )
    publish_plan(store, plan(usage={"api_calls": UNIT, "sms": UNIT}))  # basic@2
    changed = change_plan(store, TENANT, "s1", "basic", at(10))
    assert changed.phases[1].plan_version == 2
    assert changed.phases[1].usage_overrides == {"api_calls": UNIT}
    assert changed.phases[1].fixed_overrides == {"base": Decimal("8")}
    to_pro = change_plan(store, TENANT, "s1", "pro", at(20))
    assert to_pro.phases[2].usage_overrides == {} and to_pro.phases[2].fixed_overrides == {}


def test_change_refused_outside_the_subscription_or_into_an_overlap(store) -> None:
    create_subscription(store, subscription(phases=[phase(start=at(1), end=at(1, month=2))]))
    for when, reason in ((at(1, year=2025), "before the subscription starts"), (at(2, month=2), "has ended")):
        with pytest.raises(Invalid) as exc:
            change_plan(store, TENANT, "s1", "pro", when)
        assert exc.value.field == "at" and reason in exc.value.reason
    with pytest.raises(Invalid) as exc:
        change_plan(store, TENANT, "s1", "gold", at(10))
    assert exc.value.field == "plan_code"
    with pytest.raises(Invalid) as exc:
        change_plan(store, TENANT, "s1", "pro", at(10), plan_version=4)
    assert exc.value.field == "plan_version" and "no version 4" in exc.value.reason
    create_subscription(store, subscription("s2", phases=[phase("pro", start=at(20))]))
    before = outbox_count(store)
    with pytest.raises(Conflict):  # c1 is already on pro from Jan 20 in s2
        change_plan(store, TENANT, "s1", "pro", at(10))
    assert outbox_count(store) == before and len(get_subscription(store, TENANT, "s1").phases) == 1


def test_cancel(store) -> None:
    create_subscription(store, subscription(phases=[phase(start=at(1))]))
    change_plan(store, TENANT, "s1", "pro", at(15))
    canceled = cancel_subscription(store, TENANT, "s1", at(10), expected_version=2)
    assert [(p.plan_code, p.end) for p in canceled.phases] == [("basic", at(10))]  # the later phase is dropped
    assert canceled.status == "terminated" and canceled.version == 3
    with pytest.raises(Invalid) as exc:
        cancel_subscription(store, TENANT, "s1", at(20))
    assert exc.value.field == "at"
    future = datetime.now(UTC) + timedelta(days=30)
    put_customer(store, customer("c2"))
    create_subscription(store, subscription("s2", "c2"))
    scheduled = cancel_subscription(store, TENANT, "s2", future)
    assert scheduled.status == "canceled" and scheduled.phases[0].end == future.astimezone(UTC)
    # the customer may subscribe to the same plan again once the first subscription ends
    create_subscription(store, subscription("s3", "c2", phases=[phase(start=future)]))


def test_cancel_before_the_start_covers_no_instant(store) -> None:
    create_subscription(store, subscription(phases=[phase(start=at(1, month=6))]))
    canceled = cancel_subscription(store, TENANT, "s1", at(1, month=3))
    assert canceled.phases[0].start == canceled.phases[0].end == at(1, month=6)
    assert canceled.phase_at(at(1, month=6)) is None
    create_subscription(store, subscription("s2", phases=[phase(start=at(1, month=6))]))  # no overlap left
    # nor for a subscription that spans its start (the empty phase [Jun 1, Jun 1) lies inside [May 1, ...))
    put_customer(store, customer("c2"))
    create_subscription(store, subscription("s3", "c2", phases=[phase(start=at(1, month=6))]))
    cancel_subscription(store, TENANT, "s3", at(1, month=3))
    create_subscription(store, subscription("s4", "c2", phases=[phase(start=at(1, month=5))]))


def test_a_plan_deleted_after_its_phase_ended_stays_valid_history(store) -> None:
    create_subscription(
        store, subscription(phases=[phase(start=at(1), end=at(1, month=2)), phase("pro", start=at(1, month=2))])
    )
    delete_plan(store, TENANT, "basic")  # only an ended phase uses it
    publish_plan(store, plan("gold", usage={"api_calls": UNIT}))
    changed = change_plan(store, TENANT, "s1", "gold", at(1, month=3))
    assert [(p.plan_code, p.plan_version) for p in changed.phases] == [("basic", 1), ("pro", 1), ("gold", 1)]
    with pytest.raises(Invalid) as exc:  # but no new phase may start on it
        create_subscription(store, subscription("s2", phases=[phase(start=at(1, year=2027))]))
    assert exc.value.field == "phases[0].plan_code"


def test_back_dated_changes_into_a_finalized_period_are_refused(store) -> None:
    """The caller passes the end of the newest invoiced period (from the invoice ledger): Feb 1 here."""
    closed = at(1, month=2)
    with pytest.raises(Invalid) as exc:
        create_subscription(store, subscription(phases=[phase(start=at(15))]), finalized_until=closed)
    assert exc.value.field == "phases[0].start" and "finalized" in exc.value.reason
    create_subscription(store, subscription(phases=[phase(start=at(1, month=2))]), finalized_until=closed)
    for call in (
        lambda: change_plan(store, TENANT, "s1", "pro", at(1, month=2) - timedelta(seconds=1), finalized_until=closed),
        lambda: cancel_subscription(store, TENANT, "s1", at(20), finalized_until=closed),
    ):
        with pytest.raises(Invalid) as exc:
            call()
        assert exc.value.field == "at"
    assert get_subscription(store, TENANT, "s1").version == 1
    changed = change_plan(store, TENANT, "s1", "pro", at(10, month=2), finalized_until=closed)  # adjustments: not here
    assert changed.phases[1].start == at(10, month=2)


@given(
    a=st.tuples(st.integers(0, 20), st.one_of(st.none(), st.integers(0, 10))),
    b=st.tuples(st.integers(0, 20), st.one_of(st.none(), st.integers(0, 10))),
)
def test_overlap_rule_is_interval_intersection(a, b) -> None:
    """[start, end) in whole hours against the set of hours each covers (open-ended: up to hour 40; length 0: a
    subscription canceled before it started, which covers none)."""
    from meterstream.entities.subscriptions import _overlaps

    def span(start: int, length: int | None) -> tuple[datetime, datetime | None, set[int]]:
        end = None if length is None else start + length
        return (
            at(1, hour=0) + timedelta(hours=start),
            None if end is None else at(1) + timedelta(hours=end),
            set(range(start, 40 if end is None else end)),
        )

    a_start, a_end, a_hours = span(*a)
    b_start, b_end, b_hours = span(*b)
    assert _overlaps(a_start, a_end, b_start, b_end) == bool(a_hours & b_hours)
