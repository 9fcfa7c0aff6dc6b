"""Lago's `POST /invoices/preview` (in-process, no broker): which subscription a body names, Lago's 404s, and the
previews not made here refused naming the field; nothing is written. The preview's amounts, priced by the close
over real usage, through lago-python-client: test_compat_lago_sdk_billing.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lago_app import BASE, add_metric, headers, make_app, plan_body
from test_compat_lago_subscriptions_store import CLICKHOUSE, sub

URL = f"{BASE}/invoices/preview"


@pytest.fixture
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    with make_app(tmp_path, clickhouse_client=CLICKHOUSE) as c:
        admin = headers(c)
        storage = add_metric(c, "t1", "storage")
        assert c.post(f"{BASE}/plans", json=plan_body("pro", storage), headers=admin).status_code == 200
        assert c.post(f"{BASE}/plans", json=plan_body("lite", storage), headers=admin).status_code == 200
        for body in (sub("s1"), sub("s2", customer="globex"), sub("s3", customer="globex", plan="lite")):
            assert c.post(f"{BASE}/subscriptions", json=body, headers=admin).status_code == 200
        yield c


def sdk_body(customer: str | None = "acme", external_ids: list[str] | None = None, **top: Any) -> dict[str, Any]:
    """The body as lago-python-client 1.55 sends `InvoicePreview(...)`: every field, None where not set."""
    body: dict[str, Any] = {
        "plan_code": None,
        "billing_time": None,
        "subscription_at": None,
        "coupons": None,
        "billing_entity_code": None,
        "customer": {"external_id": customer, "name": None, "currency": None},
        "subscriptions": {"external_ids": external_ids, "plan_code": None, "terminated_at": None},
    }
    body.update(top)
    return body


def test_the_subscription_previewed(client) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[str, str]] = []

    def stand_in(_ch: Any, _db: str, _sf: Any, tenant: str, subscription: str, _at: Any) -> dict[str, Any]:
        seen.append((tenant, subscription))
        raise ValueError("priced by the close (tested end to end)")

    client.app.state.lago.draft_usage = stand_in
    reader = headers(client, role="read")
    # acme has one active subscription: it is previewed when none is named; globex's must be named
    for body, expected in ((sdk_body(), ("t1", "s1")), (sdk_body("globex", ["s3"]), ("t1", "s3"))):
        resp = client.post(URL, json=body, headers=reader)
        assert (resp.status_code, list(resp.json()["error_details"])) == (422, ["subscriptions.external_ids"])
        assert seen[-1] == expected
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("body", "status", "answer"),
    [
        (sdk_body("nobody"), 404, "customer_not_found"),
        (sdk_body("acme", ["s2"]), 404, "subscription_not_found"),  # globex's
        (sdk_body("acme", ["nope"]), 404, "subscription_not_found"),
        (sdk_body("globex"), 422, "subscriptions.external_ids"),  # two active: which?
        (sdk_body("globex", ["s2", "s3"]), 422, "subscriptions.external_ids"),
        (sdk_body("acme", [""]), 422, "subscriptions.external_ids"),
        (sdk_body(None), 422, "customer.external_id"),
        (sdk_body(plan_code="pro"), 422, "plan_code"),
        (sdk_body(coupons=[{"code": "WELCOME"}]), 422, "coupons"),
        (dict(sdk_body(), subscriptions={"external_ids": ["s1"], "plan_code": "lite"}), 422, "subscriptions.plan_code"),
        (
            dict(sdk_body(), subscriptions={"external_ids": ["s1"], "terminated_at": "2026-12-20T00:00:00Z"}),
            422,
            "subscriptions.terminated_at",
        ),
        (["not", "an", "object"], 422, "customer"),
    ],
)
def test_refusals(client, body: Any, status: int, answer: str) -> None:  # type: ignore[no-untyped-def]
    def never(*_args: Any) -> dict[str, Any]:
        raise AssertionError("nothing is priced for a refused preview")

    client.app.state.lago.draft_usage = never
    resp = client.post(URL, json=body, headers=headers(client, role="read"))
    assert resp.status_code == status, resp.text
    got = resp.json()["code"] if status == 404 else next(iter(resp.json()["error_details"]))
    assert got == answer
    invoices = client.get(f"{BASE}/invoices", headers=headers(client, role="read")).json()
    assert invoices["meta"]["total_count"] == 0  # nothing written
