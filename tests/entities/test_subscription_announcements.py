"""Subscription lifecycle webhooks (entities/subscriptions.py `announce_due`, `_transitions`) on SQLite and
PostgreSQL: each subscription's start and end announced once, in the transaction that writes it or, when it comes
later, in the one of `announce_due` that sees it come. Times are relative to the real clock (NOW): the store's
writes read it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from entity_docs import TENANT, customer, phase, plan, subscription

from meterstream.entities.customers import put_customer
from meterstream.entities.plans import publish_plan
from meterstream.entities.subscriptions import (
    _notices,
    _transitions,
    announce_due,
    cancel_subscription,
    create_subscription,
)
from meterstream.webhooks.outbox import events

NOW = datetime.now(UTC).replace(microsecond=0)
HOUR = timedelta(hours=1)
STARTED, TERMINATED = "subscription.started", "subscription.terminated"


def test_transitions_by_hand() -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    assert _transitions(None, t0 + HOUR, None, t0) == ([], "pending")  # not yet
    assert _transitions(None, t0, None, t0) == ([STARTED], "started")  # from its first instant
    assert _transitions("started", t0, None, t0 + HOUR) == ([], "started")  # once
    assert _transitions("started", t0, t0 + HOUR, t0 + HOUR) == ([TERMINATED], "ended")  # at its end
    assert _transitions("ended", t0, t0 + HOUR, t0 + 2 * HOUR) == ([], "ended")
    assert _transitions(None, t0, t0 + HOUR, t0 + 2 * HOUR) == ([STARTED, TERMINATED], "ended")  # both unseen
    assert _transitions(None, t0 + HOUR, t0 + HOUR, t0) == ([TERMINATED], "ended")  # canceled before it started
    assert _transitions("ended", t0, None, t0 + HOUR) == ([STARTED], "started")  # ended, then extended
    assert _transitions("started", t0 + HOUR, None, t0) == ([], "pending")  # moved to start later: waits again


@pytest.fixture
def store(sf):  # type: ignore[no-untyped-def]
    put_customer(sf, customer(currency="USD"))
    publish_plan(sf, plan())
    return sf


def _announced(sf) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    out = []
    for e in events(sf, TENANT):
        body = orjson.loads(e.body)
        if body["type"] in (STARTED, TERMINATED):  # the lifecycle (the notices: `_notices_sent`)
            out.append((body["type"], body["data"]["subscription"], body["data"]["status"]))
    return out


def test_a_start_and_an_end_that_come_later_are_announced_once(store) -> None:  # type: ignore[no-untyped-def]
    create_subscription(store, subscription("s1", phases=[phase(start=NOW + HOUR, end=NOW + 3 * HOUR)]))
    assert _announced(store) == []  # pending
    assert announce_due(store, NOW + HOUR / 2) == 0
    assert announce_due(store, NOW + HOUR) == 1 and announce_due(store, NOW + 2 * HOUR) == 0
    assert _announced(store) == [(STARTED, "s1", "active")]
    assert announce_due(store, NOW + 4 * HOUR) == 1 and announce_due(store, NOW + 5 * HOUR) == 0
    assert _announced(store) == [(STARTED, "s1", "active"), (TERMINATED, "s1", "terminated")]
    body = orjson.loads(events(store, TENANT)[-1].body)["data"]
    start, end = (f"{t:%Y-%m-%dT%H:%M:%S}.000000Z" for t in (NOW + HOUR, NOW + 3 * HOUR))
    assert (body["customer"], body["plan_code"], body["started_at"], body["ended_at"]) == ("c1", "basic", start, end)
    assert events(store, TENANT)[-1].key == f"{TENANT}/c1"


def test_writes_announce_what_they_make_true(store) -> None:  # type: ignore[no-untyped-def]
    create_subscription(store, subscription("s1", phases=[phase(start=NOW - 24 * HOUR)]))  # began yesterday
    assert _announced(store) == [(STARTED, "s1", "active")]  # at once, in the write
    cancel_subscription(store, TENANT, "s1", NOW)  # ended now
    assert _announced(store)[1:] == [(TERMINATED, "s1", "terminated")]
    assert announce_due(store, NOW + HOUR) == 0  # nothing left to say

    create_subscription(store, subscription("s2", phases=[phase(start=NOW + 24 * HOUR)]))
    cancel_subscription(store, TENANT, "s2", NOW)  # canceled before it started: ended at once, never started
    assert _announced(store)[2:] == [(TERMINATED, "s2", "canceled")]
    assert announce_due(store, NOW + 48 * HOUR) == 0

    # back-dated over a whole span: both, in order, in the write
    create_subscription(store, subscription("s3", phases=[phase(start=NOW - 48 * HOUR, end=NOW - 24 * HOUR)]))
    assert _announced(store)[3:] == [(STARTED, "s3", "active"), (TERMINATED, "s3", "terminated")]


def test_the_upgrade_marks_existing_subscriptions_as_announced(fresh_url: str) -> None:
    """Subscriptions written before 0017 (made at the head, the columns dropped by a downgrade to 0016): the upgrade
    fills their start and end and marks what already happened as announced, so nothing past is sent; a start still
    to come is announced when it comes."""
    from alembic import command
    from sqlalchemy import select

    from meterstream.entities.db import alembic_config, make_engine, migrate, session_factory
    from meterstream.entities.subscriptions import SubscriptionRow

    engine = make_engine(url=fresh_url)
    migrate(engine=engine)
    sf = session_factory(engine)
    put_customer(sf, customer(currency="USD"))
    publish_plan(sf, plan())
    create_subscription(sf, subscription("past", phases=[phase(start=NOW - 48 * HOUR, end=NOW - 24 * HOUR)]))
    create_subscription(sf, subscription("now", phases=[phase(start=NOW - 12 * HOUR)]))
    put_customer(sf, customer("c2", currency="USD"))
    create_subscription(sf, subscription("later", "c2", phases=[phase(start=NOW + 24 * HOUR)]))
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0016")
    migrate(engine=engine)
    with sf() as s:
        got = {r.external_id: (r.announced, r.starts_at is not None, r.ends_at is not None)
               for r in s.scalars(select(SubscriptionRow))}  # fmt: skip
    assert got == {"past": ("ended", True, True), "now": ("started", True, False), "later": ("pending", True, False)}
    before = len(events(sf, TENANT))
    assert announce_due(sf, NOW + HOUR) == 0  # nothing past is sent again
    assert announce_due(sf, NOW + 25 * HOUR) == 1  # `later` when it starts
    assert len(events(sf, TENANT)) == before + 1
    engine.dispose()


# --- notices: trial ended, termination alerts -------------------------------------------------------------------

TRIAL_ENDED, ALERT = "subscription.trial_ended", "subscription.termination_alert"
DAY = 24 * HOUR


def test_notices_by_hand() -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    none: frozenset[str] = frozenset()
    # a trial ending inside the subscription: once, when it has ended
    assert _notices(none, t0, t0 + 14 * DAY, None, t0 + 13 * DAY) == ([], none)
    due, sent = _notices(none, t0, t0 + 14 * DAY, None, t0 + 14 * DAY)
    assert due == [(TRIAL_ENDED, {"trial_ended_at": t0 + 14 * DAY})] and sent == {"trial"}
    assert _notices(sent, t0, t0 + 14 * DAY, None, t0 + 20 * DAY) == ([], sent)
    # a trial that would end after the subscription (or at its start): never
    assert _notices(none, t0, t0 + 14 * DAY, t0 + 10 * DAY, t0 + 9 * DAY)[0] == [(ALERT, {"alert_days": 1})]
    assert _notices(none, t0, t0, None, t0 + DAY) == ([], {"trial"})  # no trial ran: nothing, but looked at
    # alerts 45, 15 and 1 day(s) before the end, each once; of several due at once only the nearest
    end = t0 + 100 * DAY
    assert _notices(none, t0, None, end, end - 46 * DAY) == ([], none)
    due, sent = _notices(none, t0, None, end, end - 45 * DAY)
    assert due == [(ALERT, {"alert_days": 45})] and sent == {"end45"}
    assert _notices(sent, t0, None, end, end - 20 * DAY) == ([], sent)
    due, sent = _notices(sent, t0, None, end, end - 10 * DAY)
    assert due == [(ALERT, {"alert_days": 15})] and sent == {"end45", "end15"}
    due, sent = _notices(none, t0, None, end, end - 12 * HOUR)  # written 12 hours before its end: only the 1-day
    assert due == [(ALERT, {"alert_days": 1})] and sent == {"end45", "end15", "end1"}
    assert _notices(sent, t0, None, end, end + HOUR) == ([], sent)  # ended: nothing more


def _notices_sent(sf) -> list[tuple[str, str, object]]:  # type: ignore[no-untyped-def]
    out = []
    for e in events(sf, TENANT):
        body = orjson.loads(e.body)
        if body["type"] in (TRIAL_ENDED, ALERT):
            data = body["data"]
            out.append((body["type"], data["subscription"], data.get("alert_days", data.get("trial_ended_at"))))
    return out


def test_notices_are_sent_once_by_the_write_or_when_they_come(store) -> None:  # type: ignore[no-untyped-def]
    create_subscription(store, subscription("s1", phases=[phase(start=NOW - 20 * DAY, end=NOW + 50 * DAY)],
                                            trial_end=NOW - DAY))  # fmt: skip
    # in the write: the trial that ended yesterday; no alert yet (50 days left)
    assert _notices_sent(store) == [(TRIAL_ENDED, "s1", f"{NOW - DAY:%Y-%m-%dT%H:%M:%S}.000000Z")]
    assert announce_due(store, NOW + 4 * DAY) == 0
    assert announce_due(store, NOW + 5 * DAY) == 1 and announce_due(store, NOW + 6 * DAY) == 0  # 45 days before
    assert announce_due(store, NOW + 35 * DAY) == 1  # 15 days before
    assert announce_due(store, NOW + 49 * DAY) == 1 and announce_due(store, NOW + 49 * DAY + HOUR) == 0  # 1 day
    assert [n[2] for n in _notices_sent(store)[1:]] == [45, 15, 1]
    body = orjson.loads(events(store, TENANT)[-1].body)["data"]
    assert (body["status"], body["plan_code"], body["customer"]) == ("active", "basic", "c1")

    # canceled 10 days ahead: the 15-day alert at once; moved again: the alerts are due anew
    put_customer(store, customer("c2", currency="USD"))
    create_subscription(store, subscription("s2", "c2", phases=[phase(start=NOW - DAY)]))
    cancel_subscription(store, TENANT, "s2", NOW + 10 * DAY)
    assert _notices_sent(store)[-1] == (ALERT, "s2", 15)
    cancel_subscription(store, TENANT, "s2", NOW + 5 * DAY)  # an earlier end: a new end, re-armed
    assert _notices_sent(store)[-1] == (ALERT, "s2", 15)
    assert announce_due(store, NOW + 4 * DAY + HOUR) == 1 and _notices_sent(store)[-1] == (ALERT, "s2", 1)


def test_the_upgrade_to_0018_sends_no_past_notice(fresh_url: str) -> None:
    """Subscriptions written before 0018 (made at the head, the columns dropped by a downgrade to 0017): the upgrade
    records their trial end and marks the notices whose time has passed as sent."""
    from alembic import command
    from sqlalchemy import select

    from meterstream.entities.db import alembic_config, make_engine, migrate, session_factory
    from meterstream.entities.subscriptions import SubscriptionRow

    engine = make_engine(url=fresh_url)
    migrate(engine=engine)
    sf = session_factory(engine)
    put_customer(sf, customer(currency="USD"))
    publish_plan(sf, plan())
    create_subscription(sf, subscription("s1", phases=[phase(start=NOW - 20 * DAY, end=NOW + 10 * DAY)],
                                         trial_end=NOW - DAY))  # fmt: skip
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0017")
    migrate(engine=engine)
    with sf() as s:
        row = s.scalar(select(SubscriptionRow))
        assert (row.notices, row.trial_ends_at is not None) == (" trial end45 end15 ", True)
    before = len(events(sf, TENANT))
    assert announce_due(sf, NOW + HOUR) == 0  # nothing past again
    assert announce_due(sf, NOW + 9 * DAY + HOUR) == 1  # the 1-day alert when it comes
    assert len(events(sf, TENANT)) == before + 1
    engine.dispose()
