"""Closing one customer (issue #15 item 1): "closed" is per (tenant, customer, period).

Prices from tests/data/catalog.yaml, plan `basic`: api_calls graduated 0-10 free, 10-100 at 0.50, above 100
at 0.25 (USD). By hand:
  c1 30 calls = 20 x 0.50 = 10.00; 90 calls = 80 x 0.50 = 40.00 (so 60 late calls on top of 30: +30.00)
  c2 110 calls = 90 x 0.50 + 10 x 0.25 = 47.50
  c3 20 calls = 10 x 0.50 = 5.00
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.entities import invoices
from meterstream.invoice_emitter.close import close_period, draft_period
from meterstream.invoice_emitter.ledger import closed_periods
from meterstream.invoice_emitter.store_plans import StoreView
from meterstream.rating.catalog import load_catalog

CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")


def store(path: Path) -> StoreView:
    from meterstream.entities.db import make_engine, migrate, session_factory

    engine = make_engine(url=f"sqlite:///{path}")
    migrate(engine=engine)
    return StoreView(session_factory(engine))


def insert(client, db: str, customer: str, period: str, *quantities: str) -> None:  # type: ignore[no-untyped-def]
    rows = []
    for q in quantities:
        t = datetime(int(period[:4]), int(period[5:]), 15, tzinfo=UTC)
        rows.append(["t1", uuid.uuid4().hex, customer, "", "api_calls", t, period, Decimal(q), Decimal(0), Decimal(0),
                     "USD", "basic", "api_calls", {}, "", 0, 0])  # fmt: skip
    client.insert(f"{db}.rated_usage", rows, column_names=list(RATED_COLUMNS))


def by_customer(result) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {d["customer"]: d for d in result.invoices}


def without_number(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "number"}


def test_one_customer_then_the_period_gives_the_period_wide_invoices_with_no_duplicate_and_no_gap(
    chdb_client, db: str, tmp_path: Path
) -> None:
    insert(chdb_client, db, "c1", "2026-09", "30")
    insert(chdb_client, db, "c2", "2026-09", "110")
    insert(chdb_client, db, "c3", "2026-09", "20")
    sv = store(tmp_path / "store.db")
    out = tmp_path / "inv"

    alone = close_period(chdb_client, db, CATALOG, "2026-09", out, progress=False, store=sv,
                         customers={("t1", "c2")})  # fmt: skip
    assert [(d["customer"], d["total"], d["number"]) for d in alone.invoices] == [("c2", "47.50", "DEMO-2026-000001")]
    assert closed_periods(chdb_client, db) == []  # the period is not closed for everyone
    assert sorted(p.name for p in (out / "2026-09" / "t1").iterdir()) == ["c2.json"]
    c2_file = (out / "2026-09" / "t1" / "c2.json").read_bytes()
    record = invoices.get(sv.sf, "t1", alone.invoices[0]["id"])
    assert (record.status, record.number) == ("finalized", "DEMO-2026-000001")

    again = close_period(chdb_client, db, CATALOG, "2026-09", out, progress=False, store=sv,
                         customers={("t1", "c2")})  # fmt: skip
    assert again.reissued and again.invoices == alone.invoices  # closing it alone twice: the same invoice

    whole = close_period(chdb_client, db, CATALOG, "2026-09", out, progress=False, store=sv)
    docs = by_customer(whole)
    assert {c: d["total"] for c, d in docs.items()} == {"c1": "10.00", "c2": "47.50", "c3": "5.00"}
    assert docs["c2"] == alone.invoices[0]  # left alone: same document, same number
    assert (out / "2026-09" / "t1" / "c2.json").read_bytes() == c2_file
    numbers = sorted(d["number"] for d in whole.invoices)
    assert numbers == ["DEMO-2026-000001", "DEMO-2026-000002", "DEMO-2026-000003"]  # no duplicate, no gap
    assert closed_periods(chdb_client, db) == ["2026-09"]
    listed = invoices.list_invoices(sv.sf, "t1")
    assert sorted(r.number for r in listed) == numbers  # one record each

    # the same data closed period-wide at once, in a store of its own: the same invoices but for the numbers
    db2 = f"t_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db2)
    insert(chdb_client, db2, "c1", "2026-09", "30")
    insert(chdb_client, db2, "c2", "2026-09", "110")
    insert(chdb_client, db2, "c3", "2026-09", "20")
    once = by_customer(close_period(chdb_client, db2, CATALOG, "2026-09", tmp_path / "inv2", progress=False,
                                    store=store(tmp_path / "store2.db")))  # fmt: skip
    assert {c: without_number(d) for c, d in once.items()} == {c: without_number(d) for c, d in docs.items()}
    assert once["c2"]["number"] == "DEMO-2026-000002"  # numbered in customer order there


def test_late_usage_of_a_customer_closed_alone_is_an_adjustment_on_its_next_invoice(
    chdb_client, db: str, tmp_path: Path
) -> None:
    insert(chdb_client, db, "c1", "2026-09", "30")
    insert(chdb_client, db, "c3", "2026-09", "20")
    sv = store(tmp_path / "store.db")
    out = tmp_path / "inv"
    first = close_period(chdb_client, db, CATALOG, "2026-09", out, progress=False, store=sv,
                         customers={("t1", "c1")})  # fmt: skip
    assert [d["total"] for d in first.invoices] == ["10.00"]

    insert(chdb_client, db, "c1", "2026-09", "60")  # late for c1 (September is closed for c1)
    insert(chdb_client, db, "c3", "2026-09", "10")  # on time for c3 (September is still open for c3)
    # a draft of October for c1 already shows the adjustment; c3's September usage is not late
    drafts = by_customer(draft_period(chdb_client, db, CATALOG, "2026-10", sv))
    assert list(drafts) == ["c1"] and drafts["c1"]["total"] == "30.00" and drafts["c1"]["status"] == "draft"

    sep = by_customer(close_period(chdb_client, db, CATALOG, "2026-09", out, progress=False, store=sv))
    assert sep["c1"] == first.invoices[0]  # finalized: unchanged, the late calls are not on it
    assert sep["c3"]["total"] == "10.00"  # 30 calls: 20 x 0.50

    insert(chdb_client, db, "c1", "2026-10", "5")
    octo = by_customer(close_period(chdb_client, db, CATALOG, "2026-10", out, progress=False, store=sv))
    assert list(octo) == ["c1"]  # c3: nothing late, nothing in October
    adj = [ln for ln in octo["c1"]["lines"] if ln["kind"] == "adjustment"]
    assert [(a["applies_to"], a["quantity"], a["amount"]) for a in adj] == [("2026-09", "60", "30.00")]
    assert octo["c1"]["total"] == "30.00"  # + 5 October calls in the free tier: 0.00
    # the draft became the finalized invoice: the same record, a new status
    record = invoices.get(sv.sf, "t1", octo["c1"]["id"])
    assert (record.status, record.number, orjson.loads(record.document)["total"]) == (
        "finalized",
        "DEMO-2026-000003",
        "30.00",
    )
    assert close_period(chdb_client, db, CATALOG, "2026-11", out, progress=False, store=sv).invoices == []


def test_a_later_period_closed_alone_first_is_never_charged_twice(chdb_client, db: str, tmp_path: Path) -> None:
    """September is closed for everyone; c1's late September calls go on its October invoice, closed alone;
    closing October for everyone afterwards does not bill them again."""
    insert(chdb_client, db, "c1", "2026-09", "30")
    sv = store(tmp_path / "store.db")
    out = tmp_path / "inv"
    close_period(chdb_client, db, CATALOG, "2026-09", out, progress=False, store=sv)
    insert(chdb_client, db, "c1", "2026-09", "60")  # late: +30.00
    insert(chdb_client, db, "c2", "2026-10", "20")  # 5.00
    alone = close_period(chdb_client, db, CATALOG, "2026-10", out, progress=False, store=sv,
                         customers={("t1", "c1")})  # fmt: skip
    assert [d["total"] for d in alone.invoices] == ["30.00"]
    whole = by_customer(close_period(chdb_client, db, CATALOG, "2026-10", out, progress=False, store=sv))
    assert {c: d["total"] for c, d in whole.items()} == {"c1": "30.00", "c2": "5.00"}
    assert close_period(chdb_client, db, CATALOG, "2026-11", out, progress=False, store=sv).invoices == []


def test_drafts_are_kept_current_and_the_close_finalizes_the_same_record(chdb_client, db: str, tmp_path: Path) -> None:
    insert(chdb_client, db, "c1", "2026-09", "30")
    sv = store(tmp_path / "store.db")
    first = by_customer(draft_period(chdb_client, db, CATALOG, "2026-09", sv))
    assert (first["c1"]["status"], first["c1"]["number"], first["c1"]["total"]) == ("draft", None, "10.00")
    insert(chdb_client, db, "c1", "2026-09", "60")
    draft_period(chdb_client, db, CATALOG, "2026-09", sv)
    [record] = invoices.list_invoices(sv.sf, "t1", status="draft")
    assert (record.invoice_id, record.total, record.number) == (first["c1"]["id"], Decimal("40.00"), None)
    assert closed_periods(chdb_client, db) == []  # a draft refresh closes nothing
    assert not (tmp_path / "inv").exists()
    closed = close_period(chdb_client, db, CATALOG, "2026-09", tmp_path / "inv", progress=False, store=sv)
    [final] = invoices.list_invoices(sv.sf, "t1")
    assert (final.invoice_id, final.status, final.number, final.total) == (
        record.invoice_id,
        "finalized",
        "DEMO-2026-000001",
        Decimal("40.00"),
    )
    assert closed.invoices[0]["total"] == "40.00"
    assert draft_period(chdb_client, db, CATALOG, "2026-09", sv).invoices == []  # closed: no drafts any more


def test_a_subscription_customer_closed_alone(chdb_client, db: str, tmp_path: Path) -> None:
    """Plan `std` of tenant acme: 0.10 per api call, calendar months in UTC, no fee. By hand: s-a 50 calls in
    October = 5.00, 20 late October calls = +2.00; s-b 30 calls = 3.00."""
    from meterstream.entities.customers import put_customer
    from meterstream.entities.finalization import finalized_until
    from meterstream.entities.plans import publish_plan
    from meterstream.entities.subscriptions import create_subscription
    from meterstream.schemas.entities import CustomerDoc, Phase, PlanVersionDoc, SubscriptionDoc

    sv = store(tmp_path / "store.db")
    publish_plan(sv.sf, PlanVersionDoc(tenant="acme", code="std", version=0, name="std", currency="USD",
                                       usage={"api_calls": {"model": "unit", "unit_amount": "0.10"}}))  # fmt: skip
    for who in ("s-a", "s-b"):
        put_customer(sv.sf, CustomerDoc(tenant="acme", external_id=who, name=who, version=0))
        create_subscription(sv.sf, SubscriptionDoc(
            tenant="acme", external_id=f"sub-{who}", customer=who, version=0,
            phases=[Phase(plan_code="std", plan_version=1, start=datetime(2026, 10, 1, tzinfo=UTC))]))  # fmt: skip

    def use(customer: str, day: int, quantity: str) -> None:
        row = ["acme", uuid.uuid4().hex, customer, "", "api_calls", datetime(2026, 10, day, tzinfo=UTC), "2026-10",
               Decimal(quantity), Decimal(0), Decimal(0), "USD", "std@1", "api_calls", {}, "", 0, 0]  # fmt: skip
        chdb_client.insert(f"{db}.rated_usage", [row], column_names=list(RATED_COLUMNS))

    use("s-a", 5, "50")
    use("s-b", 6, "30")
    out = tmp_path / "inv"
    alone = close_period(chdb_client, db, CATALOG, "2026-10", out, progress=False, store=sv,
                         customers={("acme", "s-a")})  # fmt: skip
    assert [(d["customer"], d["total"]) for d in alone.invoices] == [("s-a", "5.00")]
    assert finalized_until(sv.sf, "acme", "s-a") == datetime(2026, 11, 1, tzinfo=UTC)
    assert finalized_until(sv.sf, "acme", "s-b") is None  # not closed: its subscription may still change

    use("s-a", 30, "20")  # late for s-a
    whole = by_customer(close_period(chdb_client, db, CATALOG, "2026-10", out, progress=False, store=sv))
    assert {c: d["total"] for c, d in whole.items()} == {"s-a": "5.00", "s-b": "3.00"}
    assert whole["s-a"] == alone.invoices[0]
    nov = by_customer(close_period(chdb_client, db, CATALOG, "2026-11", out, progress=False, store=sv))
    adj = [(ln["kind"], ln["applies_to"], ln["quantity"], ln["amount"]) for ln in nov["s-a"]["lines"]]
    assert adj == [("adjustment", "2026-10", "20", "2.00")]
    assert (nov["s-a"]["total"], nov["s-b"]["total"]) == ("2.00", "0.00")
