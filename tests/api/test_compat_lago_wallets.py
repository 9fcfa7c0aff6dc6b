"""lago-python-client, unchanged, on a real uvicorn server (in-process app, SQL store, the embedded ClickHouse
as the usage store, no broker): wallets.create/find/find_all/update/destroy, wallet_transactions.create (paid,
granted, voided credits) and find_all; balance_cents, ongoing_balance_cents and credits_ongoing_balance as Lago
defines them, from rated_usage rows written after the wallet started; errors reach the SDK as LagoApiError in
Lago's shape. Expected figures are worked by hand in the comments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer
from lago_python_client.models.wallet import Wallet
from lago_python_client.models.wallet_transaction import WalletTransaction
from lago_wallet_helpers import lago_wallet_app
from test_wallets_api import rated

from meterstream.api.compat.lago.wallets import lago_id, our_id
from meterstream.entities.common import new_ulid


@pytest.fixture
def lago(tmp_path: Path, chdb_client):  # type: ignore[no-untyped-def]
    with lago_wallet_app(tmp_path, chdb_client, "lw") as (sdk, insert, _app):
        yield sdk, insert


def test_ids_round_trip() -> None:
    ulid = new_ulid()
    assert our_id(lago_id(ulid)) == ulid and our_id(ulid) == ulid
    assert lago_id("00000000000000000000000001") == "00000000-0000-0000-0000-000000000001"


def test_wallets_through_the_sdk(lago) -> None:  # type: ignore[no-untyped-def]
    client, insert = lago
    client.customers.create(Customer(external_id="c1", name="C1", currency="EUR"))
    made = client.wallets.create(Wallet(external_customer_id="c1", name="Prepaid", rate_amount="0.5", currency="EUR",
                                        paid_credits="40", granted_credits="10", priority=1))  # fmt: skip
    # 40 + 10 credits at 0.50 EUR = 25.00 EUR
    assert (made.status, made.currency, made.rate_amount, made.priority) == ("active", "EUR", "0.5", 1)
    assert (made.credits_balance, made.balance_cents, made.ongoing_balance_cents, made.credits_ongoing_balance) == (
        "50", 2500, 2500, "50")  # fmt: skip
    assert client.wallets.find(made.lago_id).name == "Prepaid"

    insert(rated("t1", "c1", "3.333", datetime.now(UTC) + timedelta(milliseconds=5)),
           rated("t1", "c1", "1.5", datetime.now(UTC) + timedelta(milliseconds=5)))  # fmt: skip
    now = client.wallets.find(made.lago_id)
    # this month's usage 4.833 -> 4.83 EUR: ongoing 25.00 - 4.83 = 20.17 EUR = 40.34 credits; the invoiced
    # balance (earlier months' usage only) stays 25.00; the ongoing usage is the difference
    assert (now.balance_cents, now.ongoing_balance_cents, now.ongoing_usage_balance_cents) == (2500, 2017, 483)
    assert (now.credits_ongoing_balance, now.credits_ongoing_usage_balance) == ("40.34", "9.66")
    assert now.last_balance_sync_at is not None and now.last_consumed_credit_at is not None

    txs = client.wallet_transactions.create(WalletTransaction(wallet_id=made.lago_id, paid_credits="10",
                                                              granted_credits="2"))["wallet_transactions"]  # fmt: skip
    assert [(t.transaction_status, t.transaction_type, t.status, t.credit_amount, t.amount) for t in txs] == [
        ("purchased", "inbound", "settled", "10", "5"), ("granted", "inbound", "settled", "2", "1")]  # fmt: skip
    void = WalletTransaction(wallet_id=made.lago_id, voided_credits="4")
    voided = client.wallet_transactions.create(void)["wallet_transactions"]
    assert [(t.transaction_status, t.transaction_type, t.amount) for t in voided] == [("voided", "outbound", "2")]
    # 20.17 + 5.00 + 1.00 - 2.00 = 24.17 EUR
    assert client.wallets.find(made.lago_id).ongoing_balance_cents == 2417
    listed = client.wallet_transactions.find_all(made.lago_id)["wallet_transactions"]
    assert [t.transaction_status for t in listed] == ["purchased", "granted", "purchased", "granted", "voided"]

    second = client.wallets.create(Wallet(external_customer_id="c1", name="Second", currency="EUR"))
    assert [w.name for w in client.wallets.find_all({"external_customer_id": "c1"})["wallets"]] == [
        "Prepaid", "Second"]  # fmt: skip
    updated = client.wallets.update(Wallet(name="Renamed", priority=3), second.lago_id)
    assert (updated.name, updated.priority) == ("Renamed", 3)
    gone = client.wallets.destroy(second.lago_id)
    assert (gone.status, gone.terminated_at is not None) == ("terminated", True)


def test_errors_reach_the_sdk_in_lagos_shape(lago) -> None:  # type: ignore[no-untyped-def]
    client, _ = lago
    client.customers.create(Customer(external_id="c1", name="C1", currency="EUR"))
    with pytest.raises(LagoApiError) as missing:
        client.wallets.create(Wallet(external_customer_id="ghost", currency="EUR"))
    assert (missing.value.status_code, missing.value.response["code"]) == (404, "customer_not_found")
    w = client.wallets.create(Wallet(external_customer_id="c1", currency="EUR"))
    for bad, field in (({"paid_credits": "-5"}, "paid_credits"), ({"granted_credits": "1.001"}, "granted_credits"),
                       ({"paid_credits": "abc"}, "paid_credits")):  # fmt: skip
        with pytest.raises(LagoApiError) as refused:
            client.wallet_transactions.create(WalletTransaction(wallet_id=w.lago_id, **bad))
        assert (refused.value.status_code, list(refused.value.response["error_details"])) == (422, [field])
    with pytest.raises(LagoApiError) as both:  # one good, one bad: nothing is written
        client.wallet_transactions.create(WalletTransaction(wallet_id=w.lago_id, paid_credits="5",
                                                            granted_credits="-1"))  # fmt: skip
    assert both.value.status_code == 422
    assert client.wallet_transactions.find_all(w.lago_id)["wallet_transactions"] == []
    with pytest.raises(LagoApiError) as unknown:
        client.wallets.find(str(uuid.uuid4()))
    assert (unknown.value.status_code, unknown.value.response["code"]) == (404, "wallet_not_found")
