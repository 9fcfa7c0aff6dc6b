"""A subscription write taking effect inside a month the close has closed for every customer is refused (422
naming the start / `at` field and the instant from which it may), on /v1 and Lago, also for a customer the
close did not invoice (no subscription at the close, so the store had no finalized boundary for it). Before, such
a subscription was accepted and its first month came out of the next close as late-usage adjustments of the
closed month (its usage and prorated fee on November's invoice as lines applying to "2026-10")."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from api_helpers import error, offline_app
from fastapi.testclient import TestClient

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.entities.customers import put_customer
from meterstream.entities.plans import publish_plan
from meterstream.entities.subscriptions import create_subscription
from meterstream.invoice_emitter.close import close_period
from meterstream.invoice_emitter.ledger import mark_closed
from meterstream.invoice_emitter.store_plans import StoreView
from meterstream.rating.catalog import load_catalog
from meterstream.schemas.entities import CustomerDoc, FixedCharge, Phase, PlanVersionDoc, SubscriptionDoc

T = "acme"
LAGO = "/compat/lago/api/v1"
CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def app(tmp_path: Path, chdb_client) -> Iterator[tuple[TestClient, Any, str, dict[str, str]]]:  # type: ignore[no-untyped-def]
    """(client, chdb client, its database, admin headers of acme): plan `basic` (USD, 0.10 per api call, 31.00 a
    month in arrears); customers org-a (subscribed since September), org-b (UTC) and org-ny (New York), both
    without a subscription."""
    db = f"sub_closed_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    application = offline_app(tmp_path, relay=False, clickhouse_client=chdb_client)
    application.state.queries.db = db
    with TestClient(application) as client:
        sf = application.state.sessions
        publish_plan(sf, PlanVersionDoc(
            tenant=T, code="basic", version=0, name="basic", currency="USD",
            usage={"api_calls": {"model": "unit", "unit_amount": "0.10"}},
            fixed=[FixedCharge(code="base", name="Base fee", amount=Decimal("31.00"), timing="arrears")]))  # fmt: skip
        for customer, zone in (("org-a", "UTC"), ("org-b", "UTC"), ("org-ny", "America/New_York")):
            put_customer(sf, CustomerDoc(tenant=T, external_id=customer, name=customer, version=0, currency="USD",
                                         timezone=zone))  # fmt: skip
        since_september = [Phase(plan_code="basic", plan_version=1, start=utc(2026, 9, 1))]
        create_subscription(sf, SubscriptionDoc(tenant=T, external_id="s-a", customer="org-a", version=0,
                                                phases=since_september))  # fmt: skip
        admin = {"Authorization": f"Bearer {application.state.keys.create(T, 'admin', 'a')[1]}"}
        yield client, chdb_client, db, admin
    application.state.engine.dispose()


def sub(customer: str, start: str, external_id: str | None = None) -> dict:
    return {"external_id": external_id or f"s-{customer}", "customer": customer, "plan": "basic", "start": start}


def test_start_in_a_month_closed_for_every_customer_is_refused(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, ch, db, admin = app
    # nothing closed yet: a back-dated start is accepted (the store's rule: only invoiced periods are refused)
    r = client.post("/v1/subscriptions", json=sub("org-ny", "2026-10-05T00:00:00Z", "s-early"), headers=admin)
    assert r.status_code == 201, r.text
    assert client.post("/v1/subscriptions/s-early/cancel", json={"at": "2026-10-06T00:00:00Z"},
                       headers=admin).status_code == 200  # fmt: skip

    # the close of October, for every customer: org-a is invoiced; org-b had no subscription, nothing recorded
    ch.insert(f"{db}.rated_usage", [[T, uuid.uuid4().hex, "org-a", "", "api_calls", utc(2026, 10, 5), "2026-10",
                                     Decimal(1), Decimal(0), Decimal(0), "USD", "basic@1", "api_calls", {}, "", 0, 0]],
              column_names=list(RATED_COLUMNS))  # fmt: skip
    store = StoreView(client.app.state.sessions)
    close_period(ch, db, CATALOG, "2026-10", tmp_path / "inv", progress=False, store=store)

    # org-b from Oct 10: inside the closed month -> 422 naming `start`, from Nov 1 00:00 UTC on
    r = client.post("/v1/subscriptions", json=sub("org-b", "2026-10-10T00:00:00Z"), headers=admin)
    assert error(r) == (422, "invalid", "start"), r.text
    assert "2026-11-01T00:00:00+00:00" in r.json()["error"]["message"]
    # org-ny: its October ends Nov 1 04:00 UTC (00:00 New York, summer time): 02:00 UTC is still October there
    r = client.post("/v1/subscriptions", json=sub("org-ny", "2026-11-01T02:00:00Z"), headers=admin)
    assert error(r) == (422, "invalid", "start") and "2026-11-01T04:00:00+00:00" in r.json()["error"]["message"]
    # from the end of the closed month on: accepted
    assert client.post("/v1/subscriptions", json=sub("org-b", "2026-11-01T00:00:00Z"), headers=admin).status_code == 201
    assert client.post("/v1/subscriptions", json=sub("org-ny", "2026-11-01T04:00:00Z"),
                       headers=admin).status_code == 201  # fmt: skip

    # a change or a cancel of org-b's subscription back into October: 422 naming `at`
    r = client.post("/v1/subscriptions/s-org-b/cancel", json={"at": "2026-10-31T00:00:00Z"}, headers=admin)
    assert error(r) == (422, "invalid", "at"), r.text
    r = client.post("/v1/subscriptions/s-org-b/change", json={"plan": "basic", "at": "2026-10-20T00:00:00Z"},
                    headers=admin)  # fmt: skip
    assert error(r) == (422, "invalid", "at"), r.text

    # Lago: subscription_at in October for a customer Lago creates on the fly: 422 naming subscription_at
    body = {"subscription": {"external_id": "s-lago", "external_customer_id": "org-new", "plan_code": "basic",
                             "subscription_at": "2026-10-15T00:00:00Z"}}  # fmt: skip
    r = client.post(f"{LAGO}/subscriptions", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert list(r.json()["error_details"]) == ["subscription_at"]
    body["subscription"]["subscription_at"] = "2026-11-01T00:00:00Z"
    assert client.post(f"{LAGO}/subscriptions", json=body, headers=admin).status_code == 200


def test_default_subscription_boundary_is_the_westernmost_month_end(app) -> None:  # type: ignore[no-untyped-def]
    """The tenant's default subscription prices customers in every time zone: October ends for the last of them
    at Nov 1 12:00 UTC (00:00 at UTC-12)."""
    client, ch, db, admin = app
    mark_closed(ch, db, "2026-10")
    r = client.post("/v1/subscriptions", json=sub("*", "2026-11-01T11:59:59Z", "s-default"), headers=admin)
    assert error(r) == (422, "invalid", "start") and "2026-11-01T12:00:00+00:00" in r.json()["error"]["message"]
    r = client.post("/v1/subscriptions", json=sub("*", "2026-11-01T12:00:00Z", "s-default"), headers=admin)
    assert r.status_code == 201, r.text


def test_clickhouse_down_leaves_the_store_boundary_as_the_only_check(tmp_path: Path) -> None:
    """The closed months are in ClickHouse: while it cannot be reached a back-dated write is checked against the
    store's invoiced periods only (accepted here: nothing was invoiced), as before the rule, not refused."""
    application = offline_app(tmp_path, relay=False)
    application.state.settings.clickhouse_http_port = 9  # configured, nothing listens: connection refused
    with TestClient(application) as client:
        sf = application.state.sessions
        publish_plan(sf, PlanVersionDoc(tenant=T, code="basic", version=0, name="basic", currency="USD",
                                        usage={"api_calls": {"model": "unit", "unit_amount": "0.10"}}))  # fmt: skip
        put_customer(sf, CustomerDoc(tenant=T, external_id="org-b", name="org-b", version=0, currency="USD"))
        admin = {"Authorization": f"Bearer {application.state.keys.create(T, 'admin', 'a')[1]}"}
        r = client.post("/v1/subscriptions", json=sub("org-b", "2026-10-10T00:00:00Z"), headers=admin)
        assert r.status_code == 201, r.text
    application.state.engine.dispose()
