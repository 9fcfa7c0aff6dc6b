"""Issue #17 G1 on the subscription path: a store plan's telecom lines and their late-usage adjustments get
per-user shares (invoice_emitter/subscription_invoice.py -> telecom_lines' subject_quantities;
subscription_close.py -> adjustments.late_subjects), the same figures as the catalog file's (test_telecom_subjects:
national calls 60/60 at 0.10 per minute, worked by hand)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from by_path import load

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.entities.customers import put_customer
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.entities.plans import publish_plan
from meterstream.entities.subscriptions import create_subscription
from meterstream.invoice_emitter.close import close_period
from meterstream.invoice_emitter.store_plans import StoreView
from meterstream.schemas.entities import CustomerDoc, Phase, PlanVersionDoc, SubscriptionDoc

telco = load("tests/invoice_emitter/telco_usage.py")
T, CUSTOMER, PLAN = "acme", "org-t", "voice@1"
FILE = telco.CATALOG  # the catalog file: tenant telco's plan only; acme's usage is its subscription's


def call(client, db: str, subject: str, seconds: str, period: str, offset: int, to: str = "+4933123456") -> None:  # type: ignore[no-untyped-def]
    at = datetime(int(period[:4]), int(period[5:]), 12, 10, tzinfo=UTC)
    row = [T, uuid.uuid4().hex, CUSTOMER, subject, "voice_seconds", at, period, Decimal(seconds), Decimal(0),
           Decimal(0), "EUR", PLAN, telco.VOICE, {"destination": to}, "", 0, offset]  # fmt: skip
    client.insert(f"{db}.rated_usage", [row], column_names=list(RATED_COLUMNS))


def shares(line: dict) -> list[tuple[str, str, str]]:
    return [(s["subject"], s["quantity"], s["amount"]) for s in line["subjects"]]


def test_subscription_telecom_lines_and_their_late_usage_are_shared(chdb_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = f"st_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    engine = make_engine(url=f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine=engine)
    sf = session_factory(engine)
    publish_plan(sf, PlanVersionDoc(tenant=T, code="voice", version=0, name="Voice", currency="EUR",
                                    telecom=telco.TELECOM))  # fmt: skip
    put_customer(sf, CustomerDoc(tenant=T, external_id=CUSTOMER, name="T", version=0, timezone="UTC"))
    create_subscription(sf, SubscriptionDoc(tenant=T, external_id="s-t", customer=CUSTOMER, version=0,
                                            phases=[Phase(plan_code="voice", plan_version=1,
                                                          start=datetime(2026, 10, 1, tzinfo=UTC))]))  # fmt: skip
    store, out = StoreView(sf), tmp_path / "inv"
    call(chdb_client, db, "alice", "61", "2026-10", 1)
    call(chdb_client, db, "bob", "200", "2026-10", 2)
    call(chdb_client, db, "carol", "30", "2026-10", 3, to="+4917012345")  # a mobile: its own line, 1 minute 0.30
    oct_ = close_period(chdb_client, db, FILE, "2026-10", out, progress=False, store=store)
    mobile, national = oct_.invoices[0]["lines"]  # line keys in order: voice_seconds/mobile/any, .../national/any
    assert (national["quantity"], national["amount"]) == ("261", "0.60")
    assert (mobile["quantity"], mobile["amount"]) == ("30", "0.30")
    # each line by its own calls' subjects, not by the meter's usage in the period (291 s)
    assert shares(national) == [("alice", "61", "0.14"), ("bob", "200", "0.46")]  # 14.02 and 45.98 -> 14, 46
    assert shares(mobile) == [("carol", "30", "0.30")]
    # late for October: alice 31 s, carol 45 s (+120 billed units, +0.20): 8.16 and 11.84 -> 8, 12
    call(chdb_client, db, "alice", "31", "2026-10", 4)
    call(chdb_client, db, "carol", "45", "2026-10", 5)
    nov = close_period(chdb_client, db, FILE, "2026-11", out, progress=False, store=store)
    (adj,) = [x for x in nov.invoices[0]["lines"] if x["kind"] == "adjustment"]
    assert (adj["quantity"], adj["amount"]) == ("76", "0.20")
    assert [(t["kind"], Decimal(t["quantity"])) for t in adj["tiers"]] == [("billed_units", Decimal(120))]
    assert shares(adj) == [("alice", "31", "0.08"), ("carol", "45", "0.12")]
