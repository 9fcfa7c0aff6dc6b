"""Issue #14, "Done when", end to end on a real broker: a customer, two plans and a subscription created through
the HTTP API, usage sent through the API and rated live by a running processor, a mid-cycle upgrade through
the API, the sink landing the rated usage in (embedded) ClickHouse, then the period close: prorated fixed fees
and each side's usage at its own plan's price, equal to a hand calculation.

The month billed is the one before today's (events must be younger than the processor's maximum age), so
its length N varies; the fees are chosen to make the hand calculation exact for any N: basic N.00 a month,
pro 2N.00 (both in advance). Customer in Europe/Paris; upgrade on day 16 at 12:00 local.
- usage: basic 150 calls, 100 free then 0.10 -> 5.00; pro 300 calls, 100 free (its own) then 0.05 -> 10.00;
- basic days 1-15: N.00 x 15/N = 15.00; pro days 16-N: 2N.00 x (N-15)/N = 2(N-15).00 (the day of the change is
  the new plan's); the opening month was not billed in advance, so these are on its own invoice;
- in advance, the next month on pro in full: 2N.00.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.sink import ClickHouseSink
from meterstream.ingest.topics import ensure_topics
from meterstream.invoice_emitter.close import close_period
from meterstream.invoice_emitter.store_plans import StoreView
from meterstream.processor.live_catalog import open_catalog_view
from meterstream.processor.runner import NativeProcessor
from meterstream.rating.catalog import load_catalog

pytestmark = pytest.mark.kafka
T = "acme"
PARIS = ZoneInfo("Europe/Paris")
CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")  # tenant t1 only


def local(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=PARIS)


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def rows(client, db: str) -> dict[str, tuple[str, Decimal]]:
    found = client.query(f"SELECT event_id, plan, amount FROM {db}.rated_usage FINAL").result_rows
    return {e: (p, a) for e, p, a in found}


def wait_rows(client, db: str, ids: set[str], timeout: float = 60.0) -> dict[str, tuple[str, Decimal]]:
    deadline = time.monotonic() + timeout
    while not ids <= set(found := rows(client, db)):
        assert time.monotonic() < deadline, f"not rated and landed in ClickHouse in time: {ids - set(found)}"
        time.sleep(0.3)
    return found


def test_a_mid_cycle_upgrade_through_the_api_is_invoiced_with_prorated_fees_and_each_sides_prices(
    kafka_settings, chdb_client, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from meterstream.api.app import create_app

    today = datetime.now(PARIS).date()
    first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)  # the previous month
    following = today.replace(day=1)
    n = (following - first).days
    label = f"{first:%Y-%m}"
    db = f"e_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    settings = kafka_settings.model_copy(update={
        "home": tmp_path, "topic_prefix": f"cs{uuid.uuid4().hex[:8]}.", "partitions": 2,
        "database_url": f"sqlite:///{tmp_path / 'store.db'}", "clickhouse_database": db,
    })  # fmt: skip
    ensure_topics(settings)
    stop = threading.Event()
    with TestClient(create_app(settings)) as api:  # the API process runs the outbox relay
        _info, token = api.app.state.keys.create(T, "admin", "test")
        admin = {"Authorization": f"Bearer {token}"}
        view = open_catalog_view(settings, CATALOG)
        processor = NativeProcessor(settings, view)
        sink = ClickHouseSink(settings, chdb_client)
        threads = [threading.Thread(target=processor.run, args=(stop,), daemon=True),
                   threading.Thread(target=sink.run, args=(stop,), daemon=True)]  # fmt: skip
        for t in threads:
            t.start()
        try:
            for code, fee, unit in (("basic", n, "0.10"), ("pro", 2 * n, "0.05")):
                body = {"code": code, "name": code.title(), "currency": "EUR",
                        "fixed": [{"code": "base", "name": "Base fee", "amount": f"{fee}.00", "interval": "monthly",
                                   "timing": "advance"}],
                        "usage": {"api_calls": {"model": "graduated", "tiers": [
                            {"up_to": "100", "unit_amount": "0"}, {"up_to": None, "unit_amount": unit}]}}}  # fmt: skip
                assert api.post("/v1/plans", json=body, headers=admin).status_code == 201
            r = api.post("/v1/customers", json={"external_id": "org-1", "name": "Org One", "timezone": "Europe/Paris"},
                         headers=admin)  # fmt: skip
            assert r.status_code == 201, r.text
            r = api.post("/v1/subscriptions", json={"external_id": "s1", "customer": "org-1", "plan": "basic",
                                                    "start": local(first).isoformat()}, headers=admin)  # fmt: skip
            assert r.status_code == 201, r.text
            before = {"id": "before", "customer": "org-1", "meter": "api_calls", "quantity": "150",
                      "time": rfc3339(local(first + timedelta(days=9), 10))}  # fmt: skip
            assert api.post("/v1/events", json=[before], headers=admin).status_code in (200, 202)
            landed = wait_rows(chdb_client, db, {"before"})
            assert landed["before"][0] == "basic@1"  # rated live by the processor: the subscription in effect

            upgrade = local(first + timedelta(days=15), 12)  # day 16, 12:00 Paris
            r = api.post("/v1/subscriptions/s1/change", json={"plan": "pro", "at": upgrade.isoformat()},
                         headers=admin)  # fmt: skip
            assert r.status_code == 200, r.text
            after = local(first + timedelta(days=19), 10)
            deadline = time.monotonic() + 10
            while (p := view.plan_for(T, "org-1", "api_calls", after.astimezone(UTC))) is None or p.id != "pro@1":
                assert time.monotonic() < deadline, "the upgrade did not reach the processor's live catalog"
                time.sleep(0.1)
            event = {"id": "after", "customer": "org-1", "meter": "api_calls", "quantity": "300",
                     "time": rfc3339(after)}  # fmt: skip
            assert api.post("/v1/events", json=[event], headers=admin).status_code in (200, 202)
            landed = wait_rows(chdb_client, db, {"before", "after"})
            assert landed["after"][0] == "pro@1"
        finally:
            stop.set()
            for t in threads:
                t.join(30)
            view.close()
        store = StoreView.open(settings)
        assert store is not None
        result = close_period(chdb_client, db, CATALOG, label, tmp_path / "inv", progress=False, store=store)

    assert result.failed == []
    next_days = (date(following.year + following.month // 12, following.month % 12 + 1, 1) - following).days
    (doc,) = result.invoices
    got = [(ln["kind"], ln["plan"], ln.get("quantity"), ln["amount"]) for ln in doc["lines"]]
    assert got == [
        ("usage", "basic@1", "150", "5.00"),  # 50 x 0.10
        ("usage", "pro@1", "300", "10.00"),  # 200 x 0.05
        ("fixed", "basic@1", "15", "15.00"),  # 15 of N days of N.00
        ("fixed", "pro@1", str(n - 15), f"{2 * (n - 15)}.00"),  # N-15 days of 2N.00
        ("fixed", "pro@1", str(next_days), f"{2 * n}.00"),  # the next month in advance, in full
    ]
    assert [ln["start"] for ln in doc["lines"][:2]] == [rfc3339(local(first)).replace(".000", ""),
                                                        rfc3339(upgrade).replace(".000", "")]  # fmt: skip
    assert Decimal(doc["total"]) == Decimal(5 + 10 + 15 + 2 * (n - 15) + 2 * n)
    assert doc["currency"] == "EUR" and doc["period"] == label
    assert (tmp_path / "inv" / label / T / "org-1.json").exists()
