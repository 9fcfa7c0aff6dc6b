"""lago-python-client 1.55.0, unchanged, on a real uvicorn server (in-process app, SQLite store, embedded ClickHouse,
no broker): `subscriptions.lifetime_usage(external_id)`.

Worked by hand:
- invoiced: the example invoice (tests/documents/data/invoice_v2_example.json) stored for s1's October and November
  (test_compat_lago_fees_past_usage.py `_store_example`): usage lines api_calls 47.30 + storage_gb_hours 137.00 =
  184.30 each (the platform and onboarding fees are not usage) -> 2 x 18430 = 36860 cents. Not counted: the same
  invoice for September, voided; a draft for s1; an issued one of another subscription (s2);
- current: plan `pro` (lago_app.subscribe_to_pro, USD; storage graduated 0-10 GB at 0.50 then 0.40, api_calls at
  0.02), rated rows this month: storage 8 + 7 = 15 GB -> 10 x 0.50 + 5 x 0.40 = 7.00, api_calls 3 x 0.02 = 0.06 ->
  706 cents (as test_compat_lago_current_usage.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lago_app import BASE, make_app, pro_row, subscribe_to_pro
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from served_app import serve
from test_compat_lago_fees_past_usage import _store_example

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.api.compat.lago.plans import lago_uuid
from meterstream.entities import invoices

T = "t1"


def test_lifetime_usage_through_the_sdk(chdb_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = f"lago_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    now = datetime.now(UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    at = max(now - timedelta(minutes=1), month + timedelta(seconds=1))
    start = datetime(2026, 9, 1, tzinfo=UTC)
    with make_app(tmp_path, clickhouse_client=chdb_client) as client:
        client.app.state.queries.db = db
        sf = client.app.state.sessions
        admin = subscribe_to_pro(client, T, start)  # customer acme, subscription s1
        key = client.app.state.keys.create(T, "admin", "sdk")[1]
        with serve(client.app) as base:
            sdk = Client(api_key=key, api_url=f"{base}/compat/lago/")
            s1 = sdk.subscriptions.find("s1")
            empty = sdk.subscriptions.lifetime_usage("s1")  # nothing invoiced, nothing used yet
            assert (empty.invoiced_usage_amount_cents, empty.current_usage_amount_cents) == (0, 0)

            mine = {"customer": "acme", "subscription": "s1"}
            _store_example(sf, "INV-OCT", month=10, **mine)
            _store_example(sf, "INV-NOV", month=11, **mine)
            _store_example(sf, "INV-SEP", month=9, **mine)
            invoices.void(sf, T, "INV-SEP", "issued twice")  # voided: not counted
            _store_example(sf, "INV-DRAFT", month=11, finalize=False, **mine)  # a draft: not counted
            _store_example(sf, "INV-S2", month=11, customer="acme", subscription="s2")  # another subscription's
            rows = [pro_row(T, meter, quantity, "0", at)
                    for meter, quantity in (("storage", "8"), ("storage", "7"), *[("api_calls", "1")] * 3)]  # fmt: skip
            client.app.state.queries.client().insert(f"{db}.rated_usage", rows, column_names=list(RATED_COLUMNS))

            usage = sdk.subscriptions.lifetime_usage("s1")
            assert (usage.lago_id, usage.lago_subscription_id, usage.external_subscription_id) == (
                lago_uuid(T, "lifetime_usage", "s1"), s1.lago_id, "s1")  # fmt: skip
            assert (usage.invoiced_usage_amount_cents, usage.current_usage_amount_cents) == (36860, 706)
            assert (usage.external_historical_usage_amount_cents, usage.usage_thresholds) == (0, [])
            assert usage.from_datetime == "2026-09-01T00:00:00.000Z"  # the subscription's start
            to = datetime.fromisoformat(usage.to_datetime.replace("Z", "+00:00"))  # type: ignore[union-attr]
            assert now - timedelta(seconds=1) <= to <= datetime.now(UTC)

            later = {"external_id": "s3", "external_customer_id": "globex", "plan_code": "pro",
                     "subscription_at": (now + timedelta(days=40)).isoformat()}  # fmt: skip
            assert client.post(f"{BASE}/subscriptions", json={"subscription": later}, headers=admin).status_code == 200
            pending = sdk.subscriptions.lifetime_usage("s3")  # not started yet: nothing invoiced, no current usage
            assert (pending.invoiced_usage_amount_cents, pending.current_usage_amount_cents) == (0, 0)

            with pytest.raises(LagoApiError) as unknown:
                sdk.subscriptions.lifetime_usage("s9")
            assert (unknown.value.status_code, unknown.value.response["code"]) == (404, "subscription_not_found")
