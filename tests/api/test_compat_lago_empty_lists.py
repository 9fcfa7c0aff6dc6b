"""Lago's lists answer Lago's `meta` for an empty list: page 0 of 0 (`current_page` 0, `total_pages` 0,
`total_count` 0, no next or previous page), as lago-api's Pagination concern does; before, page 1 of 1. A list
with something in it is unchanged (page 1 of 1 here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lago_app import BASE, add_metric, headers, make_app, plan_body

from meterstream.entities import wallets
from meterstream.entities.customers import put_customer
from meterstream.schemas.entities import CustomerDoc

EMPTY = {"current_page": 0, "next_page": None, "prev_page": None, "total_pages": 0, "total_count": 0}
LISTS = [("billable_metrics", "billable_metrics"), ("plans", "plans"), ("subscriptions", "subscriptions"),
         ("coupons", "coupons"), ("applied_coupons", "applied_coupons"), ("taxes", "taxes"),
         ("invoices", "invoices"), ("credit_notes", "credit_notes"),
         ("wallets?external_customer_id=c1", "wallets"), ("customers/c1/wallets", "wallets"),
         ("customers/c1/applied_coupons", "applied_coupons")]  # fmt: skip


@pytest.fixture
def client(tmp_path: Path) -> TestClient:  # type: ignore[misc]
    with make_app(tmp_path) as c:
        put_customer(c.app.state.sessions, CustomerDoc(tenant="t1", external_id="c1", name="c1", version=0,
                                                       currency="EUR"))  # fmt: skip
        yield c


@pytest.mark.parametrize(("path", "root"), LISTS)
def test_an_empty_list_is_page_0_of_0(client: TestClient, path: str, root: str) -> None:
    r = client.get(f"{BASE}/{path}", headers=headers(client, role="read"))
    assert r.status_code == 200, r.text
    assert (r.json()[root], r.json()["meta"]) == ([], EMPTY)


def test_paged_lists_ask_for_page_2_of_nothing_still_empty(client: TestClient) -> None:
    r = client.get(f"{BASE}/invoices?page=2&per_page=10", headers=headers(client, role="read"))
    assert r.json()["meta"] == EMPTY


def test_a_wallet_without_transactions(client: TestClient) -> None:
    spec = wallets.WalletSpec("t1", "c1", name="Main")
    wallet, _ = wallets.create_wallet(client.app.state.sessions, spec)
    r = client.get(f"{BASE}/wallets/{wallet.id}/wallet_transactions", headers=headers(client, role="read"))
    assert (r.status_code, r.json()["wallet_transactions"], r.json()["meta"]) == (200, [], EMPTY)


def test_a_list_with_one_item_is_page_1_of_1(client: TestClient) -> None:
    admin = headers(client)
    storage = add_metric(client, "t1", "storage")
    assert client.post(f"{BASE}/plans", json=plan_body("pro", storage), headers=admin).status_code == 200
    meta = client.get(f"{BASE}/plans", headers=admin).json()["meta"]
    assert meta == {"current_page": 1, "next_page": None, "prev_page": None, "total_pages": 1, "total_count": 1}
