"""`meterstream billing run` (deploy/billing_run.py): which periods, the guards it waits for, idempotence, the
schedule and the scheduler `up` runs.

Prices from tests/data/catalog.yaml, tenant t1 on plan `basic`: api_calls 0-10 free, 10-100 at 0.50, above 100
at 0.25 (USD). By hand: 30 calls = 20 x 0.50 = 10.00; 12 calls = 2 x 0.50 = 1.00; 110 calls = 90 x 0.50 +
10 x 0.25 = 47.50.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from meterstream.deploy.billing_run import (
    BillingScheduler,
    Daily,
    due_periods,
    parse_schedule,
    run_billing,
)
from meterstream.schemas.settings import Settings

CATALOG = Path(__file__).resolve().parents[1] / "data" / "catalog.yaml"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- pure: the schedule and the periods due ----------------------------------------------------------------


def test_the_schedule_parser() -> None:
    assert parse_schedule("daily@02:00") == Daily(2, 0)
    assert parse_schedule(" DAILY@23:59 ") == Daily(23, 59)
    assert parse_schedule("off") is None
    for bad in ("daily@24:00", "daily@2:00", "daily", "weekly@02:00", "daily@02:60", ""):
        with pytest.raises(ValueError, match="METERSTREAM_BILLING_SCHEDULE: must be 'daily@HH:MM'"):
            parse_schedule(bad)


def test_the_next_run_is_the_next_daily_time_strictly_after_now() -> None:
    two = Daily(2, 0)
    assert two.next_after(utc(2026, 12, 1, 1, 59)) == utc(2026, 12, 1, 2, 0)
    assert two.next_after(utc(2026, 12, 1, 2, 0)) == utc(2026, 12, 2, 2, 0)  # just ran: tomorrow
    assert two.next_after(utc(2026, 12, 31, 23, 0)) == utc(2027, 1, 1, 2, 0)


def test_due_periods_follow_the_last_closed_one_and_never_include_the_current_month() -> None:
    now = utc(2026, 12, 1, 0, 30)
    assert due_periods(["2026-07", "2026-08"], ["2026-05"], now) == ["2026-09", "2026-10", "2026-11"]
    assert due_periods(["2026-11"], [], now) == []
    assert due_periods([], ["2026-12", "2026-10"], now) == ["2026-10", "2026-11"]  # from the earliest usage
    assert due_periods([], ["2026-12"], now) == []  # only current usage
    assert due_periods([], [], now) == []
    assert due_periods(["2026-11"], [], utc(2027, 2, 3)) == ["2026-12", "2027-01"]  # across the year
    assert due_periods(["2027-01"], [], now) == []  # a forced close of a later month: nothing before it again


# --- the run: chdb + the session's real broker ------------------------------------------------------------


def _usage(client, db: str, customer: str, at: datetime, quantity: str) -> None:  # type: ignore[no-untyped-def]
    from meterstream.aggregation.rows import RATED_COLUMNS

    row = ["t1", uuid.uuid4().hex, customer, "", "api_calls", at, f"{at:%Y-%m}", Decimal(quantity), Decimal(0),
           Decimal(0), "USD", "basic", "api_calls", {}, "", 0, 0]  # fmt: skip
    client.insert(f"{db}.rated_usage", [row], column_names=list(RATED_COLUMNS))


@pytest.fixture
def setup(chdb_client, kafka_settings: Settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    from meterstream.aggregation.ddl import create_schema
    from meterstream.ingest.topics import ensure_topics

    db = f"b_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    settings = kafka_settings.model_copy(update={
        "topic_prefix": f"b{uuid.uuid4().hex[:8]}.", "clickhouse_database": db, "catalog": CATALOG,
        "home": tmp_path / "home", "database_url": None})  # fmt: skip
    ensure_topics(settings)
    return settings, db


@pytest.mark.kafka
def test_a_run_closes_exactly_the_ended_unclosed_periods_and_a_second_run_nothing(
    chdb_client, setup, tmp_path: Path
) -> None:
    from meterstream.invoice_emitter.ledger import closed_periods

    settings, db = setup
    _usage(chdb_client, db, "c1", utc(2026, 9, 10), "30")
    _usage(chdb_client, db, "c1", utc(2026, 10, 10), "12")
    _usage(chdb_client, db, "c2", utc(2026, 11, 10), "110")
    _usage(chdb_client, db, "c1", utc(2026, 12, 2), "50")  # the current month: never closed
    out = tmp_path / "inv"

    def run(now: datetime):  # type: ignore[no-untyped-def]
        return run_billing(settings, out, wait_seconds=30, publish=False, now=lambda: now, client=chdb_client)

    first = run(utc(2026, 12, 5))
    assert (first.closed, first.outcome, first.exit_code) == (["2026-09", "2026-10", "2026-11"], "closed", 0)
    assert first.invoices == {"2026-09": 1, "2026-10": 1, "2026-11": 1}
    total = {p: orjson.loads(f.read_bytes())["total"] for p, f in
             [(p, next((out / p / "t1").glob("*.json"))) for p in first.closed]}  # fmt: skip
    assert total == {"2026-09": "10.00", "2026-10": "1.00", "2026-11": "47.50"}
    assert closed_periods(chdb_client, db) == ["2026-09", "2026-10", "2026-11"]
    assert not (out / "2026-12").exists()

    again = run(utc(2026, 12, 5, 1))
    assert (again.closed, again.outcome, again.exit_code) == ([], "nothing_to_do", 0)
    assert closed_periods(chdb_client, db) == ["2026-09", "2026-10", "2026-11"]


@pytest.mark.kafka
def test_a_run_waits_for_the_backlog_and_gives_up_at_its_deadline(chdb_client, setup, tmp_path: Path) -> None:
    from confluent_kafka import Consumer, TopicPartition

    from meterstream.ingest.producer import make_producer
    from meterstream.ingest.topics import Topics
    from meterstream.invoice_emitter.ledger import closed_periods
    from meterstream.processor.runner import app_id

    settings, db = setup
    _usage(chdb_client, db, "c1", utc(2026, 11, 10), "30")
    usage_topic = Topics.from_settings(settings).usage
    producer = make_producer(settings)
    producer.produce(usage_topic, key=b"t1/c1", value=b'{"id": "late"}', partition=1)
    assert producer.flush(30) == 0
    out = tmp_path / "inv"

    def run(wait: float):  # type: ignore[no-untyped-def]
        return run_billing(settings, out, wait_seconds=wait, publish=False, now=lambda: utc(2026, 12, 5),
                           poll_seconds=0.3, client=chdb_client)  # fmt: skip

    refused = run(1.0)  # nobody processes the event: refused at the deadline, nothing closed
    assert (refused.closed, refused.outcome, refused.exit_code) == ([], "refused", 1)
    assert refused.refused == "waited 1s: processor lag 1 event; use --force to close anyway"
    assert closed_periods(chdb_client, db) == []

    # stopped (SIGTERM of `billing run`, `up` stopping) while it waits: it ends at once, nothing closed
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    stopped = run_billing(settings, out, wait_seconds=60, publish=False, now=lambda: utc(2026, 12, 5),
                          poll_seconds=0.3, client=chdb_client, stop=stop)  # fmt: skip
    assert time.monotonic() - t0 < 30
    assert stopped.refused == "stopped while waiting: processor lag 1 event; use --force to close anyway"
    assert (stopped.closed, closed_periods(chdb_client, db)) == ([], [])

    def processor_catches_up() -> None:  # the processor commits the event a moment after the run started
        c = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": app_id(settings),
                      "enable.auto.commit": False})  # fmt: skip
        c.commit(offsets=[TopicPartition(usage_topic, 1, 1)], asynchronous=False)
        c.close()

    timer = threading.Timer(1.5, processor_catches_up)
    timer.start()
    try:
        done = run(60.0)
    finally:
        timer.join()
    assert (done.closed, done.exit_code) == (["2026-11"], 0)
    assert orjson.loads((out / "2026-11" / "t1" / "c1.json").read_bytes())["total"] == "10.00"


@pytest.mark.kafka
def test_a_period_not_ended_in_a_customers_time_zone_waits_for_the_next_run(chdb_client, setup, tmp_path: Path) -> None:
    from meterstream.entities.customers import put_customer
    from meterstream.entities.db import make_engine, migrate, session_factory
    from meterstream.entities.plans import publish_plan
    from meterstream.entities.subscriptions import create_subscription
    from meterstream.invoice_emitter.ledger import closed_periods, mark_closed
    from meterstream.schemas.entities import CustomerDoc, Phase, PlanVersionDoc, SubscriptionDoc

    settings, db = setup
    url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = settings.model_copy(update={"database_url": url})
    engine = make_engine(url=url)
    migrate(engine=engine)
    sf = session_factory(engine)
    publish_plan(sf, PlanVersionDoc(tenant="acme", code="std", version=0, name="std", currency="USD",
                                    usage={"api_calls": {"model": "unit", "unit_amount": "0.10"}}))  # fmt: skip
    put_customer(sf, CustomerDoc(tenant="acme", external_id="nyc", name="NYC", version=0, timezone="America/New_York"))
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
    mark_closed(chdb_client, db, "2026-11")
    # 03:00Z on New Year's day: December has ended in UTC, not in New York (EST, UTC-5)
    result = run_billing(settings, tmp_path / "inv", wait_seconds=5, publish=False, now=lambda: utc(2027, 1, 1, 3),
                         client=chdb_client)  # fmt: skip
    assert (result.closed, result.outcome, result.exit_code) == ([], "nothing_to_do", 0)
    assert result.waiting == "2026-12 ends 2027-01-01T05:00Z in America/New_York"
    assert closed_periods(chdb_client, db) == ["2026-11"]


# --- the scheduler `up` runs --------------------------------------------------------------------------------


def test_the_scheduler_runs_billing_run_as_a_child_and_writes_its_metrics(tmp_path: Path) -> None:
    """A fresh embedded store with no usage: the child finds nothing due (Kafka is not asked) and exits 0."""
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update({"METERSTREAM_HOME": str(tmp_path / "home"), "METERSTREAM_CLICKHOUSE_URL": f"chdb://{store}",
                "METERSTREAM_CLICKHOUSE_HTTP_PORT": "0", "METERSTREAM_CATALOG": str(CATALOG)})  # fmt: skip
    schema = "from meterstream.aggregation.client import connect; from meterstream.aggregation.ddl import " \
             "create_schema; from meterstream.schemas.settings import Settings; create_schema(connect(Settings()), " \
             "'meterstream')"  # fmt: skip
    subprocess.run([sys.executable, "-c", schema], env=env, check=True, timeout=120)
    said: list[str] = []
    scheduler = BillingScheduler(Daily(2, 0), env, tmp_path / "home", tmp_path / "logs", said.append)
    answer = scheduler.run_once()
    assert answer is not None and answer["outcome"] == "nothing_to_do" and answer["closed"] == []
    assert said == [f"billing run: nothing closed (log {tmp_path / 'logs'})"]
    metrics = scheduler.metrics_file.read_text()
    assert 'meterstream_billing_runs_total{outcome="nothing_to_do"} 1.0' in metrics
    assert "meterstream_billing_last_exit_code 0.0" in metrics
    assert "meterstream_billing_periods_closed_total 0.0" in metrics
    assert "meterstream_billing_wallet_interval_top_ups_total 0.0" in metrics
    assert "--- billing run " in (tmp_path / "logs" / "billing.log").read_text()


@pytest.mark.kafka
def test_a_customer_in_its_grace_period_is_finalized_by_the_first_run_after_it_with_its_late_usage(
    chdb_client, setup, tmp_path: Path
) -> None:
    """c1 has 3 days of grace: November ends 2026-12-01T00:00Z (UTC), so c1 is finalized from 2026-12-04T00:00Z.
    By hand: c2 110 calls = 90 x 0.50 + 10 x 0.25 = 47.50; c1 30 calls = 10.00, with 60 late calls 90 = 40.00."""
    from meterstream.entities import invoices
    from meterstream.entities.customers import put_customer
    from meterstream.entities.db import make_engine, migrate, session_factory
    from meterstream.invoice_emitter.ledger import closed_periods
    from meterstream.schemas.entities import CustomerDoc

    settings, db = setup
    url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = settings.model_copy(update={"database_url": url})
    engine = make_engine(url=url)
    migrate(engine=engine)
    sf = session_factory(engine)
    put_customer(sf, CustomerDoc(tenant="t1", external_id="c1", name="C1", version=0, invoice_grace_days=3))
    _usage(chdb_client, db, "c1", utc(2026, 11, 10), "30")
    _usage(chdb_client, db, "c2", utc(2026, 11, 10), "110")
    out = tmp_path / "inv"

    def run(now: datetime):  # type: ignore[no-untyped-def]
        return run_billing(settings, out, wait_seconds=30, publish=False, now=lambda: now, client=chdb_client)

    first = run(utc(2026, 12, 3, 23, 59))  # a minute before c1's grace ends
    assert (first.closed, first.invoices, first.outcome, first.exit_code) == ([], {"2026-11": 1}, "closed", 0)
    assert first.in_grace == {"2026-11": ["t1/c1"]}
    assert first.waiting == "2026-11: 1 customer in their grace period: t1/c1 until 2026-12-04T00:00Z"
    assert closed_periods(chdb_client, db) == []  # not closed for everyone yet
    [c2] = invoices.list_invoices(sf, "t1")
    assert (c2.customer, c2.status, c2.number, c2.total) == ("c2", "finalized", "DEMO-2026-000001", Decimal("47.50"))

    _usage(chdb_client, db, "c1", utc(2026, 11, 20), "60")  # late, but within c1's grace: on its November invoice
    second = run(utc(2026, 12, 4))
    assert (second.closed, second.in_grace, second.waiting, second.exit_code) == (["2026-11"], {}, None, 0)
    assert closed_periods(chdb_client, db) == ["2026-11"]
    got = {r.customer: (r.number, r.total) for r in invoices.list_invoices(sf, "t1")}
    assert got == {"c2": ("DEMO-2026-000001", Decimal("47.50")), "c1": ("DEMO-2026-000002", Decimal("40.00"))}
    assert orjson.loads((out / "2026-11" / "t1" / "c1.json").read_bytes())["total"] == "40.00"


def test_each_run_marks_invoices_past_their_due_date_overdue(chdb_client, tmp_path: Path) -> None:
    """No usage at all: nothing to close, but a finalized invoice due 2026-11-01 is overdue on 2026-11-02."""
    from meterstream.aggregation.ddl import create_schema
    from meterstream.entities import invoices
    from meterstream.entities.db import make_engine, migrate, session_factory

    db = f"b_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url=url)
    migrate(engine=engine)
    sf = session_factory(engine)
    invoices.upsert_draft(sf, tenant="t1", invoice_id="i1", customer="c1", period="2026-10", currency="USD",
                          total="12.00", issue_date=datetime(2026, 11, 1).date(),
                          due_date=datetime(2026, 11, 1).date(), document=b"{}")  # fmt: skip
    invoices.finalize(sf, "t1", "i1", "DEMO")
    settings = Settings(home=tmp_path / "home", catalog=CATALOG, clickhouse_database=db, database_url=url)

    def run(now: datetime):  # type: ignore[no-untyped-def]
        return run_billing(settings, tmp_path / "inv", publish=False, now=lambda: now, client=chdb_client)

    assert run(utc(2026, 11, 1, 23)).overdue == 0  # on the due date itself: not yet
    result = run(utc(2026, 11, 2, 0, 30))
    assert (result.overdue, result.outcome, result.exit_code) == (1, "nothing_to_do", 0)
    assert invoices.get(sf, "t1", "i1").status == "overdue"
    assert run(utc(2026, 11, 3)).overdue == 0  # once


def test_the_draft_scheduler_runs_billing_drafts_as_a_child(tmp_path: Path) -> None:
    """A fresh embedded store with one event of the current month: the child writes its draft (30 calls: 10.00)
    and keeps its state; a second run finds nothing new."""
    from meterstream.deploy.billing_run import DraftScheduler, drafts_scheduler_for

    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update({"METERSTREAM_HOME": str(tmp_path / "home"), "METERSTREAM_CLICKHOUSE_URL": f"chdb://{store}",
                "METERSTREAM_CLICKHOUSE_HTTP_PORT": "0", "METERSTREAM_CATALOG": str(CATALOG)})  # fmt: skip
    seed = (
        "import uuid; from datetime import UTC, datetime; from decimal import Decimal; "
        "from meterstream.aggregation.client import connect; from meterstream.aggregation.ddl import create_schema; "
        "from meterstream.aggregation.rows import RATED_COLUMNS; from meterstream.schemas.settings import Settings; "
        "c = connect(Settings()); create_schema(c, 'meterstream'); now = datetime.now(UTC); "
        "c.insert('meterstream.rated_usage', [['t1', uuid.uuid4().hex, 'c1', '', 'api_calls', now, f'{now:%Y-%m}', "
        "Decimal(30), Decimal(0), Decimal(0), 'USD', 'basic', 'api_calls', {}, '', 0, 0]], "
        "column_names=list(RATED_COLUMNS))"
    )
    subprocess.run([sys.executable, "-c", seed], env=env, check=True, timeout=120)
    assert drafts_scheduler_for({**env, "METERSTREAM_DRAFT_REFRESH_SECONDS": "0"}, tmp_path, print) is None
    said: list[str] = []
    scheduler = drafts_scheduler_for(env, tmp_path / "logs", said.append)
    assert isinstance(scheduler, DraftScheduler) and scheduler.interval == 60
    first = scheduler.run_once()
    assert first is not None and (first["full"], first["drafts"], first["failed"]) == (True, 1, [])
    assert said == []  # quiet when all is well
    second = scheduler.run_once()
    assert second is not None and (second["full"], second["customers"], second["drafts"]) == (False, 0, 0)
    assert (tmp_path / "home" / "billing" / "drafts-state.json").exists()
    assert "--- drafts " in (tmp_path / "logs" / "drafts.log").read_text()


def test_each_run_writes_revenue_monthly_for_the_previous_and_the_current_month(chdb_client, tmp_path: Path) -> None:
    """Tenant t: c1 on basic (30/month) from 2026-09-01, c2 on pro (110/month) until 2026-10-20
    (tests/analytics/test_revenue_metrics.entity_store). A run on 2026-11-02 writes October and November."""
    import sys

    from meterstream.aggregation.ddl import create_schema

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analytics"))
    from test_revenue_metrics import entity_store

    db = f"b_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    settings = Settings(home=tmp_path / "home", catalog=CATALOG, clickhouse_database=db,
                        database_url=entity_store(tmp_path))  # fmt: skip
    result = run_billing(settings, tmp_path / "inv", publish=False, now=lambda: utc(2026, 11, 2), client=chdb_client)
    assert (result.revenue, result.revenue_error, result.exit_code) == (
        {"months": ["2026-10", "2026-11"], "tenants": 1, "rows": 2},
        None,
        0,
    )
    got = chdb_client.query(f"SELECT month, currency, start_mrr, end_mrr, churned_mrr, arr, net_revenue_retention "
                            f"FROM {db}.revenue_monthly FINAL ORDER BY month").result_rows  # fmt: skip
    # October: 140 -> 30 (c2's 110 churned), ARR 360, NRR 30/140; November: 30 -> 30, NRR 1
    assert [tuple(r) for r in got] == [
        (datetime(2026, 10, 1).date(), "USD", Decimal(140), Decimal(30), Decimal(110), Decimal(360), Decimal("0.2143")),
        (datetime(2026, 11, 1).date(), "USD", Decimal(30), Decimal(30), Decimal(0), Decimal(360), Decimal(1)),
    ]
    # January's run: December and January; the year turns
    assert run_billing(settings, tmp_path / "inv", publish=False, now=lambda: utc(2027, 1, 3),
                       client=chdb_client).revenue["months"] == ["2026-12", "2027-01"]  # fmt: skip


def test_each_run_writes_the_wallets_interval_top_ups_due(chdb_client, tmp_path: Path) -> None:
    """A wallet made 15 October 2026 with a monthly rule (50 paid): the run of 3 December writes 15 November's, a
    run the same day nothing more, the run of 16 December 15 December's (entities/wallets.py interval_top_ups)."""
    from meterstream.aggregation.ddl import create_schema
    from meterstream.entities.customers import put_customer
    from meterstream.entities.db import make_engine, migrate, session_factory
    from meterstream.entities.wallets import WalletSpec, create_wallet, list_transactions
    from meterstream.schemas.entities import CustomerDoc

    db = f"b_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    settings = Settings(home=tmp_path / "home", catalog=CATALOG, clickhouse_database=db,
                        database_url=f"sqlite:///{tmp_path / 'entities.db'}")  # fmt: skip
    engine = make_engine(settings)
    migrate(settings, engine)
    sf = session_factory(engine)
    put_customer(sf, CustomerDoc(tenant="t", external_id="c1", name="c1", version=0, currency="EUR"))
    rule = {"trigger": "interval", "interval": "monthly", "paid_credits": "50"}
    wallet, _ = create_wallet(sf, WalletSpec("t", "c1", rules=[rule]), at=utc(2026, 10, 15, 9))

    def run(day: int) -> dict | None:
        result = run_billing(settings, tmp_path / "inv", publish=False, now=lambda: utc(2026, 12, day, 12),
                             client=chdb_client)  # fmt: skip
        assert result.wallet_top_ups_error is None and result.exit_code == 0
        return result.wallet_top_ups

    assert run(3) == {"written": 1, "wallets": 1}
    assert run(3) == {"repeated": 1}
    assert run(16) == {"repeated": 1, "written": 1, "wallets": 1}
    assert [t.reference.split(":")[2] for t in list_transactions(sf, "t", wallet.id)] == ["2026-11-15", "2026-12-15"]
    engine.dispose()
