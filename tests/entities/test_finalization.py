"""Finalized periods (SQLite and PostgreSQL): the close records how far a customer is invoiced; every
subscription write reads it in its own transaction and refuses to take effect before it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from entity_docs import TENANT, at, customer, outbox_count, phase, plan, subscription
from sqlalchemy import inspect

from meterstream.entities import outbox
from meterstream.entities.common import Invalid
from meterstream.entities.customers import put_customer
from meterstream.entities.finalization import finalized_until, record_finalized
from meterstream.entities.plans import publish_plan
from meterstream.entities.subscriptions import (
    cancel_subscription,
    change_plan,
    create_subscription,
    get_subscription,
    list_subscriptions,
)

FEB_1 = at(1, month=2)


@pytest.fixture
def store(sf):
    """Customers c1, c2 (USD); plans basic@1, pro@1."""
    put_customer(sf, customer(currency="USD"))
    put_customer(sf, customer("c2", currency="USD"))
    publish_plan(sf, plan())
    publish_plan(sf, plan("pro"))
    return sf


def test_the_migration_matches_the_model(engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import meterstream.entities.finalization  # noqa: F401 - registers the model
    from meterstream.entities.db import Base

    assert "finalized_periods" in inspect(engine).get_table_names()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diff if "finalized_periods" in repr(d)] == []


def test_down_to_0004_and_up_again(fresh_url: str) -> None:
    from alembic import command

    from meterstream.entities.db import alembic_config, make_engine, migrate, session_factory

    engine = make_engine(url=fresh_url)
    migrate(engine=engine)
    record_finalized(session_factory(engine), TENANT, "c1", FEB_1)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
    assert "finalized_periods" not in inspect(engine).get_table_names()
    assert "subscriptions" in inspect(engine).get_table_names()  # 0004's tables stay
    migrate(engine=engine)
    sf = session_factory(engine)
    assert finalized_until(sf, TENANT, "c1") is None  # the table is back, empty
    record_finalized(sf, TENANT, "c1", FEB_1)
    assert finalized_until(sf, TENANT, "c1") == FEB_1
    engine.dispose()


def test_record_keeps_the_maximum_and_is_idempotent(sf) -> None:
    assert finalized_until(sf, TENANT, "c1") is None
    record_finalized(sf, TENANT, "c1", FEB_1)
    assert finalized_until(sf, TENANT, "c1") == FEB_1
    record_finalized(sf, TENANT, "c1", FEB_1)  # the same close again
    record_finalized(sf, TENANT, "c1", at(1))  # an earlier period re-closed: the boundary stays
    assert finalized_until(sf, TENANT, "c1") == FEB_1
    berlin = timezone(timedelta(hours=1))
    record_finalized(sf, TENANT, "c1", datetime(2026, 3, 1, 0, 0, tzinfo=berlin))  # = Feb 28 23:00 UTC
    got = finalized_until(sf, TENANT, "c1")
    assert got == datetime(2026, 2, 28, 23, 0, tzinfo=UTC) and got.utcoffset() == timedelta(0)
    assert finalized_until(sf, TENANT, "c2") is None  # per customer
    assert finalized_until(sf, "globex", "c1") is None  # per tenant


def test_the_default_subscription_uses_the_newest_boundary_of_the_tenant(sf) -> None:
    record_finalized(sf, TENANT, "c1", FEB_1)
    record_finalized(sf, TENANT, "c2", at(1, month=3))
    record_finalized(sf, "globex", "c3", at(1, month=6))
    assert finalized_until(sf, TENANT, "*") == at(1, month=3)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", "c1", FEB_1), "tenant"),
        ((TENANT, "", FEB_1), "customer"),
        ((TENANT, "c1", datetime(2026, 2, 1)), "until"),  # no offset: which instant?
        ((TENANT, "c1", "2026-02-01T00:00:00Z"), "until"),
    ],
)
def test_bad_input_names_the_field(sf, args, field) -> None:
    with pytest.raises(Invalid) as exc:
        record_finalized(sf, *args)
    assert exc.value.field == field
    assert finalized_until(sf, TENANT, "c1") is None


def test_a_subscription_starting_in_a_finalized_period_is_refused_and_nothing_is_written(store) -> None:
    record_finalized(store, TENANT, "c1", FEB_1)
    before = outbox_count(store)
    with pytest.raises(Invalid) as exc:
        create_subscription(store, subscription(phases=[phase(start=at(15))]))
    assert exc.value.field == "phases[0].start"
    assert "finalized" in exc.value.reason and "2026-02-01T00:00:00+00:00" in exc.value.reason
    assert outbox_count(store) == before and list_subscriptions(store, TENANT) == []
    # another customer has no finalized period: the same start is fine for it
    assert create_subscription(store, subscription("s2", "c2", phases=[phase(start=at(15))])).version == 1
    # from the boundary on (inclusive) it is accepted
    created = create_subscription(store, subscription(phases=[phase(start=FEB_1)]))
    assert created.phases[0].start == FEB_1


def test_back_dated_change_and_cancel_are_refused_before_the_boundary_and_accepted_after(store) -> None:
    create_subscription(store, subscription(phases=[phase(start=at(1))]))
    record_finalized(store, TENANT, "c1", FEB_1)
    before = outbox_count(store)
    for call in (
        lambda: change_plan(store, TENANT, "s1", "pro", FEB_1 - timedelta(seconds=1)),
        lambda: cancel_subscription(store, TENANT, "s1", at(20)),
    ):
        with pytest.raises(Invalid) as exc:
            call()
        assert exc.value.field == "at" and "finalized" in exc.value.reason
    assert get_subscription(store, TENANT, "s1").version == 1 and outbox_count(store) == before
    # a back-dated change into a period that is not finalized is accepted (the close reprices by event time)
    changed = change_plan(store, TENANT, "s1", "pro", at(10, month=2))
    assert [(p.plan_code, p.start, p.end) for p in changed.phases] == [
        ("basic", at(1), at(10, month=2)),
        ("pro", at(10, month=2), None),
    ]
    canceled = cancel_subscription(store, TENANT, "s1", FEB_1 + timedelta(days=20))
    assert canceled.phases[-1].end == at(21, month=2)


def test_the_callers_boundary_and_the_recorded_one_the_later_wins(store) -> None:
    record_finalized(store, TENANT, "c1", at(1, month=3))
    with pytest.raises(Invalid) as exc:  # the caller's older boundary does not lift the recorded one
        create_subscription(store, subscription(phases=[phase(start=at(15, month=2))]), finalized_until=FEB_1)
    assert exc.value.field == "phases[0].start"
    create_subscription(store, subscription("s2", "c2", phases=[phase(start=at(15))]))
    with pytest.raises(Invalid) as exc:  # nothing recorded for c2, the caller's boundary applies
        change_plan(store, TENANT, "s2", "pro", at(20), finalized_until=FEB_1)
    assert exc.value.field == "at"


def test_the_default_subscription_is_guarded_by_every_customer_of_the_tenant(store) -> None:
    record_finalized(store, TENANT, "c2", FEB_1)
    with pytest.raises(Invalid) as exc:
        create_subscription(store, subscription("default", "*", phases=[phase(start=at(1))]))
    assert exc.value.field == "phases[0].start"
    create_subscription(store, subscription("default", "*", phases=[phase(start=FEB_1)]))


def test_concurrent_records_keep_the_maximum(sf) -> None:
    """Four closes record boundaries for one customer at once: no error, and the latest boundary stays."""
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def close(n: int) -> None:
        try:
            barrier.wait(10)
            for month in range(1, 7):
                record_finalized(sf, TENANT, "c1", at(1, month=1 + (month + n) % 12))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=close, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    # thread n records the 1st of months 2+n .. 7+n (n = 0..3, no wrap past December): the latest is October 1st
    assert finalized_until(sf, TENANT, "c1") == at(1, month=10)


def test_a_record_waits_for_an_open_subscription_write_so_both_cannot_win(store) -> None:
    """A back-dated change in flight holds the entity write lock: the close's record waits for it to commit,
    so a close that reads the subscription after recording sees the change. Once recorded, the change is
    refused (tests above)."""
    create_subscription(store, subscription(phases=[phase(start=at(1))]))
    holder = store()
    holder.begin()
    outbox.begin_write(holder)  # what change_plan holds from its first statement to its commit
    done = threading.Event()

    def close() -> None:
        record_finalized(store, TENANT, "c1", FEB_1)
        done.set()

    thread = threading.Thread(target=close)
    thread.start()
    time.sleep(1.0)
    assert not done.is_set()  # blocked behind the open write
    assert finalized_until(store, TENANT, "c1") is None
    holder.commit()
    holder.close()
    thread.join(30)
    assert done.is_set() and finalized_until(store, TENANT, "c1") == FEB_1


def test_a_change_waits_for_an_open_record_and_then_reads_it(store) -> None:
    """The other order: a close's record is in flight (lock held, row written, not committed). A back-dated
    change waits for it and reads the committed boundary, so it is refused, not let through on a stale read."""
    from meterstream.entities.finalization import FinalizedPeriodRow

    create_subscription(store, subscription(phases=[phase(start=at(1))]))
    holder = store()
    holder.begin()
    outbox.begin_write(holder)  # what record_finalized holds from its first statement to its commit
    holder.add(FinalizedPeriodRow(tenant=TENANT, customer="c1", until=FEB_1, updated_at=FEB_1))
    holder.flush()
    result: list[object] = []

    def change() -> None:
        try:
            result.append(change_plan(store, TENANT, "s1", "pro", at(20)))
        except Invalid as exc:
            result.append(exc)

    thread = threading.Thread(target=change)
    thread.start()
    time.sleep(1.0)
    assert result == []  # blocked behind the open record
    holder.commit()
    holder.close()
    thread.join(30)
    assert len(result) == 1 and isinstance(result[0], Invalid) and result[0].field == "at"
    assert get_subscription(store, TENANT, "s1").version == 1


def test_a_back_dated_change_racing_a_record_either_lands_before_it_or_is_refused(store) -> None:
    """Run the two at once many times: either the change is refused (the record came first) or it was
    committed before the record (its phase starts before the boundary, and the record is still there)."""
    outcomes = set()
    for i in range(6):
        put_customer(store, customer(f"r{i}", currency="USD"))
        create_subscription(store, subscription(f"sub-r{i}", f"r{i}", phases=[phase(start=at(1))]))
        barrier = threading.Barrier(2)
        result: dict[str, object] = {}

        def change(i: int = i, barrier: threading.Barrier = barrier, result: dict = result) -> None:
            barrier.wait(10)
            try:
                result["change"] = change_plan(store, TENANT, f"sub-r{i}", "pro", at(20))
            except Invalid as exc:
                result["change"] = exc

        def close(i: int = i, barrier: threading.Barrier = barrier) -> None:
            barrier.wait(10)
            record_finalized(store, TENANT, f"r{i}", FEB_1)

        threads = [threading.Thread(target=change), threading.Thread(target=close)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert finalized_until(store, TENANT, f"r{i}") == FEB_1
        stored = get_subscription(store, TENANT, f"sub-r{i}")
        if isinstance(result["change"], Invalid):
            assert result["change"].field == "at" and stored.version == 1
            outcomes.add("refused")
        else:
            assert stored.version == 2 and stored.phases[1].start == at(20)
            outcomes.add("committed first")
    assert outcomes  # every round ended in one of the two allowed states
