"""Lago's current usage equals the invoice the close writes (embedded ClickHouse, SQL store, in-process API, no
broker): metric, plan, customer and subscription through the Lago routes; rated rows as the sink lands them;
`current_usage` through the close's own `draft_usage`; then the close of that period.

Worked by hand (plan `pro`, USD: 10.00 a month in arrears; storage graduated 0-10 GB at 0.50 then 0.40;
api_calls at 0.02), subscription from the start of this month (UTC):
  storage 8 + 7 = 15 GB -> 10 x 0.50 + 5 x 0.40 = 7.00 -> 700 cents (2 events)
  api_calls 3 -> 3 x 0.02 = 0.06 -> 6 cents
  current usage = 706 cents; the whole draft invoice adds the month's fee in full (active every day): 17.06.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lago_app import BASE, make_app, pro_row, subscribe_to_pro

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.invoice_emitter.close import close_period
from meterstream.invoice_emitter.store_plans import StoreView
from meterstream.rating.catalog import load_catalog

T = "t1"
CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")  # tenant t1 has no "acme"


def rated(client, db: str, meter: str, quantity: str, at: datetime) -> None:  # type: ignore[no-untyped-def]
    client.insert(f"{db}.rated_usage", [pro_row(T, meter, quantity, "0", at)], column_names=list(RATED_COLUMNS))


def test_current_usage_equals_the_hand_calculation_and_the_close(chdb_client, tmp_path: Path) -> None:
    db = f"lago_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    now = datetime.now(UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    at = max(now - timedelta(minutes=1), month + timedelta(seconds=1))
    with make_app(tmp_path, clickhouse_client=chdb_client) as client:
        client.app.state.queries.db = db
        admin = subscribe_to_pro(client, T, month)
        for meter, quantity in (("storage", "8"), ("storage", "7"), *[("api_calls", "1")] * 3):
            rated(chdb_client, db, meter, quantity, at)

        resp = client.get(f"{BASE}/customers/acme/current_usage?external_subscription_id=s1", headers=admin)
        assert resp.status_code == 200, resp.text
        usage = resp.json()["customer_usage"]
        sf = client.app.state.sessions

    assert (usage["currency"], usage["amount_cents"], usage["total_amount_cents"]) == ("USD", 706, 706)
    by_code = {c["billable_metric"]["code"]: c for c in usage["charges_usage"]}
    assert (by_code["storage"]["units"], by_code["storage"]["amount_cents"], by_code["storage"]["events_count"]) == (
        "15",
        700,
        2,
    )
    assert (by_code["api_calls"]["units"], by_code["api_calls"]["amount_cents"], by_code["api_calls"]["events_count"]
            ) == ("3", 6, 3)  # fmt: skip
    assert usage["from_datetime"] == month.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert usage["meterstream"]["invoice_total"] == "17.06"

    # the close of that period writes the same amounts
    label = usage["meterstream"]["period"]
    result = close_period(chdb_client, db, CATALOG, label, tmp_path / "inv", progress=False, store=StoreView(sf))
    assert result.failed == []
    (doc,) = [d for d in result.invoices if d["customer"] == "acme"]
    lines = {ln["code"]: ln["amount"] for ln in doc["lines"] if ln["kind"] == "usage"}
    assert lines == {"storage": "7.00", "api_calls": "0.06"}
    assert doc["total"] == "17.06"  # the customer has no country: no tax
    # the draft's lines are the final invoice's (the invoice is the version 2 document: `code` names the meter)
    assert [(ln["line_no"], ln.get("meter") or ln.get("code"), ln["quantity"], ln["amount"])
            for ln in usage["meterstream"]["lines"]] == [
        (ln["line_no"], ln["code"], ln["quantity"], ln["amount"]) for ln in doc["lines"]]  # fmt: skip
