"""The close guards (deploy/close_guards.py) and `meterstream close --force` (issue #15, item 3).

Expected ends worked by hand: December 2026 ends at local midnight on 2027-01-01; New York is UTC-5 in
winter (EST), so 05:00Z; Los Angeles UTC-8, so 08:00Z; Tokyo UTC+9 ends first (2026-12-31T15:00Z), so
UTC's own midnight is the latest of {UTC, Tokyo}. July 2026 in New York is EDT (UTC-4): 2026-08-01T04:00Z.
The lag cases run on the session's real broker: an event produced and consumed by nobody is one event of
processor lag.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from meterstream.deploy import cli
from meterstream.deploy.close_guards import (
    Backlog,
    GuardReport,
    behind,
    billing_zones,
    check_close,
    close_refusal,
    period_end,
)
from meterstream.deploy.ports import free_port
from meterstream.schemas.settings import Settings

CATALOG = Path(__file__).resolve().parents[1] / "data" / "catalog.yaml"  # tenant t1, plan basic


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- pure decisions ---------------------------------------------------------------------------------------


def test_a_period_ends_last_where_the_clock_is_furthest_behind() -> None:
    ny = period_end("2026-12", {"America/New_York"})
    assert (ny.end, ny.zone) == (utc(2027, 1, 1, 5), "America/New_York")
    assert ny.text() == "2026-12 ends 2027-01-01T05:00Z in America/New_York"
    both = period_end("2026-12", {"America/New_York", "America/Los_Angeles"})
    assert (both.end, both.zone) == (utc(2027, 1, 1, 8), "America/Los_Angeles")
    tokyo = period_end("2026-12", {"Asia/Tokyo"})
    assert (tokyo.end, tokyo.zone) == (utc(2027, 1, 1), "UTC")
    assert period_end("2026-12").end == utc(2027, 1, 1)  # catalog-file customers only: the UTC month
    summer = period_end("2026-07", {"America/New_York"})
    assert summer.end == utc(2026, 8, 1, 4)


def test_a_bad_period_is_refused_naming_the_field() -> None:
    for bad in ("2026-13", "2026-1", "26-12", ""):
        with pytest.raises(ValueError, match="period: must be YYYY-MM"):
            period_end(bad)


def test_the_refusal_says_why_with_the_numbers() -> None:
    # 03:00Z on New Year's day: December has ended in UTC, not yet in New York
    report = GuardReport(period_end("2026-12", {"America/New_York"}), utc(2027, 1, 1, 3), Backlog(1234, 2))
    assert not report.ended and not report.ok
    assert report.message() == ("2026-12 ends 2027-01-01T05:00Z in America/New_York; processor lag 1,234 events; "
                                "sink lag 2 messages; use --force to close anyway")  # fmt: skip
    later = GuardReport(period_end("2026-12", {"America/New_York"}), utc(2027, 1, 1, 5), Backlog(0, 1))
    assert later.ended  # the end instant itself: ended
    assert later.message() == "sink lag 1 message; use --force to close anyway"
    clear = GuardReport(period_end("2026-12"), utc(2027, 1, 1, 0, 0, 1), Backlog(0, 0))
    assert clear.ok and clear.message() == ""
    unknown = GuardReport(period_end("2026-12"), utc(2027, 1, 2), kafka_problem="Kafka at x:1 is unreachable (...)")
    assert unknown.reasons == ["Kafka at x:1 is unreachable (...)"]


def test_behind_counts_what_was_not_committed_before_the_targets() -> None:
    targets = {("u", 0): 10, ("u", 1): 5, ("u", 2): 0}
    # partition 0: committed 7 of 10 -> 3; partition 1: no commit (-1) -> all 5; partition 2: empty
    assert behind(targets, {("u", 0): 7, ("u", 1): -1, ("u", 2): -1}) == 8
    # a group ahead of the snapshot (new events since) is not negative lag
    assert behind(targets, {("u", 0): 12, ("u", 1): 5, ("u", 2): 3}) == 0


# --- the entity store: customers' time zones ---------------------------------------------------------------


def _store(tmp_path: Path):  # type: ignore[no-untyped-def]
    from meterstream.entities.db import make_engine, migrate, session_factory
    from meterstream.invoice_emitter.store_plans import StoreView

    engine = make_engine(url=f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine=engine)
    return StoreView(session_factory(engine))


def test_not_ended_in_new_york_while_ended_in_utc(tmp_path: Path) -> None:
    from meterstream.entities.customers import put_customer
    from meterstream.entities.plans import publish_plan
    from meterstream.entities.subscriptions import create_subscription
    from meterstream.schemas.entities import CustomerDoc, Phase, PlanVersionDoc, SubscriptionDoc

    store = _store(tmp_path)
    sf = store.sf
    publish_plan(sf, PlanVersionDoc(tenant="acme", code="std", version=0, name="std", currency="USD",
                                    usage={"api_calls": {"model": "unit", "unit_amount": "0.10"}}))  # fmt: skip
    put_customer(sf, CustomerDoc(tenant="acme", external_id="nyc", name="NYC", version=0, timezone="America/New_York"))
    # a customer WITHOUT a subscription (billed from the catalog file, UTC) does not delay the close
    put_customer(sf, CustomerDoc(tenant="acme", external_id="la", name="LA", version=0, timezone="America/Los_Angeles"))
    create_subscription(
        sf,
        SubscriptionDoc(
            tenant="acme",
            external_id="s1",
            customer="nyc",
            version=0,
            phases=[Phase(plan_code="std", plan_version=1, start=utc(2026, 1, 1))],
        ),
    )
    assert billing_zones(store) == {"America/New_York"}
    assert billing_zones(None) == set()
    end = period_end("2026-12", billing_zones(store))
    assert GuardReport(end, utc(2027, 1, 1, 3), Backlog(0, 0)).reasons == [
        "2026-12 ends 2027-01-01T05:00Z in America/New_York"
    ]
    assert GuardReport(period_end("2026-12", billing_zones(None)), utc(2027, 1, 1, 3), Backlog(0, 0)).ok

    # a tenant default subscription (`*`) bills every other customer of the tenant: LA counts now
    create_subscription(
        sf,
        SubscriptionDoc(
            tenant="acme",
            external_id="default",
            customer="*",
            version=0,
            phases=[Phase(plan_code="std", plan_version=1, start=utc(2026, 1, 1))],
        ),
    )
    assert billing_zones(store) == {"America/New_York", "America/Los_Angeles"}


# --- Kafka: lag on a real broker, and no broker at all ------------------------------------------------------


def _commit(settings: Settings, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit `offsets` for `group` as its members would (a processor or sink that processed them)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        c.close()


@pytest.mark.kafka
def test_unprocessed_events_refuse_the_close_with_the_lag(kafka_settings: Settings) -> None:
    from meterstream.ingest.producer import make_producer
    from meterstream.ingest.topics import Topics, ensure_topics
    from meterstream.processor.runner import app_id

    settings = kafka_settings.model_copy(update={"topic_prefix": f"g{uuid.uuid4().hex[:8]}."})
    ensure_topics(settings)
    topics = Topics.from_settings(settings)
    report, _ = check_close(settings, "2026-10", now=utc(2026, 12, 1))
    assert report.ok, report.message()  # empty topics, nothing to process

    producer = make_producer(settings)
    producer.produce(topics.usage, key=b"t1/c1", value=b'{"id": "e1"}', partition=0)
    assert producer.flush(30) == 0
    report, _ = check_close(settings, "2026-10", now=utc(2026, 12, 1))
    assert report.ended and report.backlog == Backlog(1, 0)
    assert report.message() == "processor lag 1 event; use --force to close anyway"

    # the processor has processed it and produced a rated message the sink has not inserted yet
    _commit(settings, app_id(settings), topics.usage, {0: 1})
    producer.produce(topics.rated, key=b"t1/c1", value=b"{}", partition=2)
    assert producer.flush(30) == 0
    report, _ = check_close(settings, "2026-10", now=utc(2026, 12, 1))
    assert report.message() == "sink lag 1 message; use --force to close anyway"
    _commit(settings, settings.topic("meterstream-sink"), topics.rated, {2: 1})
    assert check_close(settings, "2026-10", now=utc(2026, 12, 1))[0].ok


def _unreachable(tmp_path: Path, db: str) -> Settings:
    return Settings(home=tmp_path / "home", catalog=CATALOG, clickhouse_database=db, database_url=None,
                    kafka_bootstrap=f"127.0.0.1:{free_port()}")  # fmt: skip


def test_kafka_unreachable_refuses(tmp_path: Path) -> None:
    settings = _unreachable(tmp_path, "x")
    report, _ = check_close(settings, "2026-10", now=utc(2026, 12, 1), kafka_timeout=1.0)
    assert report.backlog is None
    assert report.reasons[0].startswith(f"Kafka at {settings.kafka_bootstrap} is unreachable (")
    assert report.message().endswith("the pipeline's lag cannot be checked; use --force to close anyway")


# --- `meterstream close`: refused without --force, closed with it -------------------------------------------


def test_close_refuses_without_force_and_closes_with_it(
    chdb_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from meterstream.aggregation.ddl import create_schema
    from meterstream.aggregation.rows import RATED_COLUMNS

    db = f"g_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    row = ["t1", uuid.uuid4().hex, "c1", "", "api_calls", utc(2026, 10, 15), "2026-10", Decimal(30), Decimal(0),
           Decimal(0), "USD", "basic", "api_calls", {}, "", 0, 0]  # fmt: skip
    chdb_client.insert(f"{db}.rated_usage", [row], column_names=list(RATED_COLUMNS))
    monkeypatch.setattr("meterstream.aggregation.client.connect", lambda _settings: chdb_client)
    monkeypatch.setattr("meterstream.deploy.close_guards.kafka_error", lambda s, timeout=5.0: f"Kafka at {s.bootstrap} "
                        "is unreachable (Connection refused): the pipeline's lag cannot be checked")  # fmt: skip
    settings = _unreachable(tmp_path, db)
    out = tmp_path / "inv"

    def close(period: str, force: bool) -> int:
        return cli._close(argparse.Namespace(period=period, out=str(out), no_publish=True, force=force), settings)

    assert close("2026-10", force=False) == 3
    err = capsys.readouterr().err
    assert err.strip() == (
        f"meterstream close: refused: Kafka at {settings.kafka_bootstrap} is unreachable "
        "(Connection refused): the pipeline's lag cannot be checked; use --force to close anyway"
    )
    assert not (out / "2026-10").exists()
    assert close_refusal(settings, "2026-10", chdb_client) is not None  # still not closed

    assert close("2026-10", force=True) == 0
    doc = orjson.loads((out / "2026-10" / "t1" / "c1.json").read_bytes())
    assert doc["total"] == "10.00"  # (30 - 10) x 0.50
    # closed: closing it again only re-issues the stored documents, so no guard stands in the way
    assert close_refusal(settings, "2026-10", chdb_client) is None
    assert close("2026-10", force=False) == 0

    # a month that has not ended anywhere is refused with its end
    this_month = f"{datetime.now(UTC):%Y-%m}"
    assert close(this_month, force=False) == 3
    assert f"{this_month} ends " in capsys.readouterr().err


# --- grace periods -----------------------------------------------------------------------------------------


def test_grace_ends_days_after_the_period_ends_in_the_customers_zone_and_the_refusal_names_them(tmp_path) -> None:
    from meterstream.deploy.close_guards import Grace, grace_end, in_grace
    from meterstream.entities.customers import put_customer
    from meterstream.entities.db import make_engine, migrate, session_factory
    from meterstream.invoice_emitter.store_plans import StoreView
    from meterstream.schemas.entities import CustomerDoc

    # November 2026 ends 2026-12-01T00:00 local; New York is EST (UTC-5): 05:00Z, + 3 days
    assert grace_end("2026-11", "America/New_York", 3) == utc(2026, 12, 4, 5)
    assert grace_end("2026-11", "UTC", 0) == utc(2026, 12, 1)
    engine = make_engine(url=f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine=engine)
    sf = session_factory(engine)
    put_customer(sf, CustomerDoc(tenant="t1", external_id="ny", name="NY", version=0, timezone="America/New_York",
                                 invoice_grace_days=3))  # fmt: skip
    put_customer(sf, CustomerDoc(tenant="t1", external_id="utc", name="U", version=0, invoice_grace_days=1))
    put_customer(sf, CustomerDoc(tenant="t1", external_id="none", name="N", version=0))
    store = StoreView(sf)
    at = utc(2026, 12, 2, 12)
    assert in_grace(store, "2026-11", at) == [Grace("t1", "ny", utc(2026, 12, 4, 5))]  # utc's ended 12-02T00:00Z
    assert in_grace(store, "2026-11", utc(2026, 12, 1, 12)) == [Grace("t1", "utc", utc(2026, 12, 2)),
                                                                Grace("t1", "ny", utc(2026, 12, 4, 5))]  # fmt: skip
    assert in_grace(store, "2026-11", at, {("t1", "utc")}) == []
    assert in_grace(store, "2026-11", utc(2026, 12, 4, 5)) == []  # the end of grace itself: over
    report = GuardReport(period_end("2026-11"), at, Backlog(0, 0), grace=in_grace(store, "2026-11", at))
    assert report.message() == ("1 customer in their grace period: t1/ny until 2026-12-04T05:00Z; "
                                "use --force to close anyway")  # fmt: skip
    many = [Grace("t1", f"c{i}", utc(2026, 12, 3)) for i in range(7)]
    assert GuardReport(period_end("2026-11"), at, Backlog(0, 0), grace=many).reasons == [
        "7 customers in their grace period: t1/c0 until 2026-12-03T00:00Z, t1/c1 until 2026-12-03T00:00Z, "
        "t1/c2 until 2026-12-03T00:00Z, t1/c3 until 2026-12-03T00:00Z, t1/c4 until 2026-12-03T00:00Z and 2 more"
    ]
