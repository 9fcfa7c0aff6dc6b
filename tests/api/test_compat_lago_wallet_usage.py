"""Lago's `customer_usage` object has no wallet field (getlago/lago-openapi src/schemas/CustomerUsageObject.yaml:
from/to_datetime, issuing_date, lago_invoice_id, currency, amount_cents, taxes_amount_cents, total_amount_cents,
charges_usage); Lago shows prepaid credit on the wallet instead, whose ongoing usage is the current usage. So
here `wallets.find`'s `ongoing_usage_balance_cents` and `current_usage`'s `amount_cents` must be the same
figure for the same rated rows (both read `rated_usage FINAL` of the customer; docs/lago.md, Wallets).

Worked by hand (plan `pro`, USD, storage graduated 0-10 GB at 0.50 then 0.40, api_calls at 0.02), rows rated
as the stream rates them (delta of the running total):
  storage 8 GB -> 8 x 0.50 = 4.00; then 7 GB -> 2 x 0.50 + 5 x 0.40 = 3.00 (15 GB: 10 x 0.50 + 5 x 0.40 = 7.00)
  api_calls 3 x 0.02 = 0.06
  current usage 7.06 = 706 cents; a 20.00 USD wallet (started before the rows): ongoing usage 706 cents,
  ongoing balance 2000 - 706 = 1294 cents, the billed balance (earlier months only) 2000.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lago_app import BASE, make_app, pro_row, subscribe_to_pro

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS

T = "t1"


def test_wallet_ongoing_usage_is_the_current_usage(chdb_client, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if (month + timedelta(days=32)).replace(day=1) - now < timedelta(minutes=1):
        pytest.skip("the month ends within a minute: the rows would fall in the next one")
    db = f"lagow_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    with make_app(tmp_path, clickhouse_client=chdb_client) as client:
        client.app.state.queries.db = db
        admin = subscribe_to_pro(client, T, month)
        made = client.post(f"{BASE}/wallets", headers=admin, json={"wallet": {
            "external_customer_id": "acme", "currency": "USD", "paid_credits": "20"}})  # fmt: skip
        assert made.status_code == 200, made.text
        wallet = made.json()["wallet"]["lago_id"]

        at = datetime.now(UTC) + timedelta(milliseconds=5)  # after the wallet started
        rows = [("storage", "8", "4.00"), ("storage", "7", "3.00"), *[("api_calls", "1", "0.02")] * 3]
        chdb_client.insert(f"{db}.rated_usage", [pro_row(T, meter, q, a, at) for meter, q, a in rows],
                           column_names=list(RATED_COLUMNS))  # fmt: skip

        usage = client.get(f"{BASE}/customers/acme/current_usage?external_subscription_id=s1", headers=admin)
        found = client.get(f"{BASE}/wallets/{wallet}", headers=admin)
        assert usage.status_code == 200 and found.status_code == 200, (usage.text, found.text)
        usage_body, w = usage.json()["customer_usage"], found.json()["wallet"]

    assert "wallet" not in " ".join(usage_body)  # Lago's object has no wallet field; nor has ours
    assert usage_body["amount_cents"] == 706
    assert (w["ongoing_usage_balance_cents"], w["ongoing_balance_cents"], w["balance_cents"]) == (706, 1294, 2000)
    assert w["ongoing_usage_balance_cents"] == usage_body["amount_cents"]
