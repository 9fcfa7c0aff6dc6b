"""Lago's ongoing balance current to the processor, not to the sink: with the processor's balance snapshot of the
customer in the API's feed (api/balance_feed.py), `wallets.find` / `find_all` of lago-python-client, unchanged,
count the usage the processor debited that ClickHouse does not hold yet, never twice once the sink wrote it,
nothing when the snapshot is behind ClickHouse, and top-ups made after the snapshot at once. Figures by hand in
the comments (one EUR wallet, rate 1: credits = euros)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lago_python_client.models import Customer
from lago_python_client.models.wallet import Wallet
from lago_python_client.models.wallet_transaction import WalletTransaction
from lago_wallet_helpers import lago_wallet_app
from test_wallets_api import rated

from meterstream.api.routes.authorize import feed_of
from meterstream.api.wallet_usage import streamed_ahead
from meterstream.schemas.provisioning import BalanceSnapshot


@pytest.fixture
def lago(tmp_path: Path, chdb_client):  # type: ignore[no-untyped-def]
    with lago_wallet_app(tmp_path, chdb_client, "lws") as (sdk, insert, app):
        yield sdk, insert, feed_of(app)


def snap(consumed: str, currency: str = "EUR") -> BalanceSnapshot:
    return BalanceSnapshot(tenant="t1", customer="c1", currency=currency, balance="0", consumed=consumed,
                           as_of="2026-12-01T10:00:00Z")  # fmt: skip


def test_streamed_ahead() -> None:
    from decimal import Decimal

    assert streamed_ahead(snap("6.00"), "EUR", Decimal("4.833")) == Decimal("1.167")
    assert streamed_ahead(snap("2.00"), "EUR", Decimal("6")) == 0  # the feed behind ClickHouse: nothing
    assert streamed_ahead(snap("6.00", "USD"), "EUR", Decimal("0")) == 0  # another currency
    assert streamed_ahead(None, "EUR", Decimal("1")) == 0


def test_ongoing_balance_follows_the_processor(lago) -> None:  # type: ignore[no-untyped-def]
    client, insert, feed = lago
    client.customers.create(Customer(external_id="c1", name="C1", currency="EUR"))
    made = client.wallets.create(Wallet(external_customer_id="c1", name="Prepaid", rate_amount="1", currency="EUR",
                                        paid_credits="20"))  # fmt: skip
    at = datetime.now(UTC) + timedelta(milliseconds=5)
    insert(rated("t1", "c1", "3.333", at), rated("t1", "c1", "1.5", at))
    # ClickHouse alone: 4.833 -> 4.83; ongoing 20.00 - 4.83 = 15.17
    assert client.wallets.find(made.lago_id).ongoing_balance_cents == 1517
    # the processor has debited 6.00 (1.167 of it not yet written by the sink): ongoing 20.00 - 6.00 = 14.00
    feed.put(snap("6.00"))
    now = client.wallets.find(made.lago_id)
    assert (now.ongoing_balance_cents, now.credits_ongoing_balance, now.ongoing_usage_balance_cents) == (
        1400, "14", 600)  # fmt: skip
    assert now.balance_cents == 2000  # earlier months' usage only: none
    listed = client.wallets.find_all({"external_customer_id": "c1"})["wallets"]
    assert [w.ongoing_balance_cents for w in listed] == [1400]
    # the sink catches up (4.833 + 1.167 = 6.000): counted once, still 14.00
    insert(rated("t1", "c1", "1.167", at))
    assert client.wallets.find(made.lago_id).ongoing_balance_cents == 1400
    # a snapshot behind ClickHouse (the feed lagging): ClickHouse's 6.00 holds
    feed.put(snap("2.00"))
    assert client.wallets.find(made.lago_id).ongoing_balance_cents == 1400
    # a top-up after the snapshot shows at once (the ledger is read now): 14.00 + 10.00 = 24.00
    feed.put(snap("6.00"))
    client.wallet_transactions.create(WalletTransaction(wallet_id=made.lago_id, paid_credits="10"))
    assert client.wallets.find(made.lago_id).credits_ongoing_balance == "24"
