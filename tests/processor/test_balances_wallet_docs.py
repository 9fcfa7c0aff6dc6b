"""Wallet writes put the wallet with its settled ledger on the entity outbox (entities/wallets.py), with a version
that grows with every write, so the live catalog keeps the newest whatever order they arrive in."""

from __future__ import annotations

from datetime import UTC, datetime

from meterstream.entities.customers import put_customer
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.entities.outbox import read_outbox
from meterstream.entities.wallets import TopUp, WalletSpec, create_wallet, settle_transaction, top_up, void_credits
from meterstream.processor.live_catalog import EntityTable
from meterstream.schemas.entities import CustomerDoc, WalletDoc, decode_change

AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def test_every_wallet_write_publishes_the_whole_wallet_with_a_growing_version(tmp_path) -> None:
    engine = make_engine(url=f"sqlite:///{tmp_path / 'e.db'}")
    migrate(engine=engine)
    sf = session_factory(engine)
    put_customer(sf, CustomerDoc(tenant="t", external_id="c", name="c", version=0, currency="EUR"))
    wallet, _ = create_wallet(sf, WalletSpec("t", "c", rate_amount="0.5"), [TopUp("paid", "10")], at=AT)  # type: ignore[arg-type]
    pending, _ = top_up(sf, "t", wallet.id, TopUp("granted", "4", status="pending"), at=AT)  # same instant
    settle_transaction(sf, "t", wallet.id, pending.id, at=AT)
    void_credits(sf, "t", wallet.id, "2", at=AT)
    top_up(sf, "t", wallet.id, TopUp("paid", "10", reference="r1"))
    top_up(sf, "t", wallet.id, TopUp("paid", "10", reference="r1"))  # a repeat: nothing new, nothing published
    docs = [d for _, _, v in read_outbox(sf, 0, 100) if isinstance(d := decode_change(v), WalletDoc)]
    assert len(docs) == 5
    versions = [d.version for d in docs]
    assert versions == sorted(set(versions))  # strictly growing, even for writes at the same instant
    # the pending grant counts only once settled; units are credits x 0.50 EUR in cents
    assert [[(e.kind, e.units) for e in d.entries] for d in docs] == [
        [("paid", 500)],
        [("paid", 500)],
        [("paid", 500), ("granted", 200)],
        [("paid", 500), ("granted", 200), ("void", 100)],
        [("paid", 500), ("granted", 200), ("void", 100), ("paid", 500)],
    ]
    table = EntityTable()
    for d in reversed(docs):  # out of order: the newest version wins
        table.apply(d)
    assert len(table.wallets("t", "c")[0].entries) == 4
    assert table.take_wallet_changes() == {("t", "c")} and table.take_wallet_changes() == set()
    engine.dispose()


def test_credits_are_written_out_whole() -> None:
    from decimal import Decimal

    from meterstream.entities.wallets import StoredWallet, credits_of

    w = StoredWallet("w", "t", "c", None, None, "EUR", Decimal("0.5"), 50, "active", None, AT, None)
    # 5.00 EUR at 0.50 a credit = 10 credits (str() of the normalized value used to print "1E+1" in /v1)
    assert [str(credits_of(u, w)) for u in (500, 50_000, 617, 1, 0)] == ["10", "1000", "12.34", "0.02", "0"]
