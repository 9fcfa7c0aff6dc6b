"""The wallet store (entities/wallets.py) on SQLite and PostgreSQL: wallets of a customer, top-ups paid and
granted (idempotent by reference, pending until settled), voids, refusals naming the field, and balances from
the ledger and a stand-in usage reader (the API reads rated usage from ClickHouse: tests/api/test_wallets_api.py).
Migration 0009 matches the models and goes down to 0008 and up again. Expected figures are worked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from sqlalchemy import inspect

from meterstream.entities.common import Conflict, Invalid, NotFound
from meterstream.entities.customers import put_customer
from meterstream.entities.wallets import (
    TopUp,
    WalletSpec,
    create_wallet,
    credits_of,
    customer_balances,
    list_transactions,
    list_wallets,
    settle_transaction,
    terminate_wallet,
    top_up,
    update_wallet,
    void_credits,
)
from meterstream.schemas.entities import CustomerDoc

T = "acme"
START = datetime(2026, 9, 1, tzinfo=UTC)


def customer(sf, external_id: str = "c1", currency: str | None = "EUR") -> None:  # type: ignore[no-untyped-def]
    put_customer(sf, CustomerDoc(tenant=T, external_id=external_id, name=external_id, version=0, currency=currency))


class Usage:
    """A stand-in for the ClickHouse read: (time, amount) rows; answers each piece's exact sum."""

    def __init__(self, *rows: tuple[datetime, str]) -> None:
        self.rows = [(t, Decimal(a)) for t, a in rows]
        self.calls: list[tuple[str, list[datetime]]] = []

    def __call__(self, currency: str, bounds: list[datetime]) -> list[Decimal]:
        self.calls.append((currency, bounds))
        return [sum((a for t, a in self.rows if lo <= t < hi), Decimal(0)) for lo, hi in pairwise(bounds)]


def test_wallet_top_ups_and_balance(sf) -> None:  # type: ignore[no-untyped-def]
    customer(sf)
    main, (paid,) = create_wallet(sf, WalletSpec(T, "c1", name="Main", priority=1),
                                  [TopUp("paid", "50.00", reference="r1")], at=START)  # fmt: skip
    assert (main.currency, main.rate_amount, main.status, paid.units, paid.status) == ("EUR", 1, "active", 5000,
                                                                                         "settled")  # fmt: skip
    promo, _ = create_wallet(sf, WalletSpec(T, "c1", name="Promo", priority=2, rate_amount=Decimal("0.5")), at=START)
    granted, new = top_up(sf, T, promo.id, TopUp("granted", "20", expires_at=START + timedelta(days=10)), at=START)
    assert (new, granted.units, granted.credits) == (True, 1000, Decimal(20))  # 20 credits x 0.50 = 10.00 EUR
    again, new = top_up(sf, T, main.id, TopUp("paid", "50.00", reference="r1"))
    assert (new, again.id) == (False, paid.id)  # the retry answers the first one
    with pytest.raises(Conflict) as other:
        top_up(sf, T, main.id, TopUp("paid", "60.00", reference="r1"))
    assert other.value.field == "reference"

    usage = Usage((START + timedelta(days=2), "12.344"), (START + timedelta(days=3), "0.002"),
                  (START + timedelta(days=12), "45"))  # fmt: skip
    (cb,) = customer_balances(sf, T, "c1", usage, now=START + timedelta(days=20))
    # usage: 12.344 + 0.002 = 12.346 by 09-04 -> 12.35 (running total rounded), 57.346 in all -> 57.35 EUR
    # main (priority 1, 50.00): 09-01..09-10 piece: 12.35 from main -> 37.65 left
    # promo (priority 2, 10.00, expires 09-11): untouched -> 10.00 expire on 09-11
    # 09-11..: 45.00 more: main 37.65, 7.35 uncovered
    main_s, promo_s = cb.wallets
    assert (main_s.ongoing.consumed, main_s.ongoing.balance) == (5000, 0)
    assert (promo_s.ongoing.consumed, promo_s.ongoing.expired, promo_s.ongoing.balance) == (0, 1000, 0)
    assert (cb.uncovered, cb.usage, cb.currency) == (735, 5735, "EUR")
    assert usage.calls[0][0] == "EUR"


def test_priority_lowest_first_and_billed_balance_counts_earlier_months_only(sf) -> None:  # type: ignore[no-untyped-def]
    customer(sf)
    low, _ = create_wallet(sf, WalletSpec(T, "c1", priority=5), [TopUp("paid", "10")], at=START)
    high, _ = create_wallet(sf, WalletSpec(T, "c1", priority=1), [TopUp("granted", "4")], at=START)
    now = datetime(2026, 10, 15, tzinfo=UTC)
    usage = Usage((datetime(2026, 9, 20, tzinfo=UTC), "3"), (datetime(2026, 10, 2, tzinfo=UTC), "2.50"))
    (cb,) = customer_balances(sf, T, "c1", usage, now=now)
    by_id = {w.wallet.id: w for w in cb.wallets}
    # ongoing: 3.00 from `high` (4.00 -> 1.00), then 2.50: 1.00 from high, 1.50 from low (10.00 -> 8.50)
    assert (by_id[high.id].ongoing.balance, by_id[low.id].ongoing.balance) == (0, 850)
    # billed (September's usage only): high 1.00, low 10.00
    assert (by_id[high.id].billed.balance, by_id[low.id].billed.balance) == (100, 1000)
    assert by_id[low.id].last_consumed_at == datetime(2026, 10, 1, tzinfo=UTC)  # the piece from the month start


def test_pending_top_ups_count_once_settled_and_voids_take_back(sf) -> None:  # type: ignore[no-untyped-def]
    customer(sf)
    w, (pending,) = create_wallet(sf, WalletSpec(T, "c1"), [TopUp("paid", "30", status="pending")], at=START)
    (cb,) = customer_balances(sf, T, "c1", Usage(), now=START + timedelta(days=1))
    assert cb.wallets[0].ongoing.balance == 0
    settled = settle_transaction(sf, T, w.id, pending.id, at=START + timedelta(days=2))
    assert settled.status == "settled"
    void, _ = void_credits(sf, T, w.id, "5.5", reference="v1", at=START + timedelta(days=3))
    assert void_credits(sf, T, w.id, "5.5", reference="v1")[0].id == void.id
    (cb,) = customer_balances(sf, T, "c1", Usage(), now=START + timedelta(days=4))
    assert (cb.wallets[0].ongoing.inbound, cb.wallets[0].ongoing.voided, cb.wallets[0].ongoing.balance) == (
        3000, 550, 2450)  # fmt: skip
    assert [t.kind for t in list_transactions(sf, T, w.id)] == ["paid", "void"]


def test_terminate_ends_the_credits_and_refuses_top_ups(sf) -> None:  # type: ignore[no-untyped-def]
    customer(sf)
    w, _ = create_wallet(sf, WalletSpec(T, "c1"), [TopUp("granted", "8")], at=START)
    done = terminate_wallet(sf, T, w.id, at=START + timedelta(days=1))
    assert (done.status, terminate_wallet(sf, T, w.id).terminated_at) == ("terminated", done.terminated_at)
    (cb,) = customer_balances(sf, T, "c1", Usage((START + timedelta(days=2), "1")), now=START + timedelta(days=3))
    assert (cb.wallets[0].ongoing.expired, cb.wallets[0].ongoing.balance, cb.uncovered) == (800, 0, 100)
    with pytest.raises(Conflict):
        top_up(sf, T, w.id, TopUp("paid", "1"))
    assert [x.status for x in list_wallets(sf, T, "c1")] == ["terminated"]
    assert list_wallets(sf, T, "c1", "active") == []


@pytest.mark.parametrize(
    ("credits", "field", "reason"),
    [("-5", "paid_credits", "more than 0"), ("0", "paid_credits", "more than 0"),
     ("abc", "paid_credits", "not a decimal"), ("1.001", "paid_credits", "minor units"),
     ("1.000001", "paid_credits", "at most 5 decimals"), (1.5, "paid_credits", "JSON float"),
     ("NaN", "paid_credits", "finite")],
)  # fmt: skip
def test_bad_amounts_are_refused_naming_the_field(sf, credits, field, reason) -> None:  # type: ignore[no-untyped-def]
    customer(sf)
    w, _ = create_wallet(sf, WalletSpec(T, "c1"))
    with pytest.raises(Invalid) as refused:
        top_up(sf, T, w.id, TopUp("paid", credits))
    assert refused.value.field == field and reason in refused.value.reason
    assert list_transactions(sf, T, w.id) == []


def test_wallet_rules(sf) -> None:  # type: ignore[no-untyped-def]
    customer(sf)
    customer(sf, "nocur", currency=None)
    with pytest.raises(NotFound):
        create_wallet(sf, WalletSpec(T, "ghost"))
    with pytest.raises(Invalid) as cur:
        create_wallet(sf, WalletSpec(T, "c1", currency="USD"))
    assert cur.value.field == "currency"
    with pytest.raises(Invalid) as none:
        create_wallet(sf, WalletSpec(T, "nocur"))
    assert none.value.field == "currency"
    for bad, field in (({"rate_amount": Decimal(0)}, "rate_amount"), ({"priority": 0}, "priority"),
                       ({"priority": 51}, "priority")):  # fmt: skip
        with pytest.raises(Invalid) as refused:
            create_wallet(sf, WalletSpec(T, "c1", **bad))  # type: ignore[arg-type]
        assert refused.value.field == field
    jpy, _ = create_wallet(sf, WalletSpec(T, "nocur", currency="jpy", rate_amount=Decimal("3")))
    assert jpy.currency == "JPY"
    # 10 credits x 3 JPY = 30 JPY; 0.5 credits x 3 = 1.5 JPY is not whole yen
    assert top_up(sf, T, jpy.id, TopUp("paid", "10"))[0].units == 30
    with pytest.raises(Invalid, match="minor units"):
        top_up(sf, T, jpy.id, TopUp("paid", "0.5"))
    assert credits_of(10, jpy) == Decimal("3.33333")  # 10 JPY / 3 = 3.333.. credits, 5 decimals half up
    renamed = update_wallet(sf, T, jpy.id, name="Yen", priority=3)
    assert (renamed.name, renamed.priority, renamed.rate_amount) == ("Yen", 3, Decimal(3))
    with pytest.raises(NotFound):
        top_up(sf, "other-tenant", jpy.id, TopUp("paid", "1"))


MY_TABLES = ("wallets", "wallet_transactions")


def test_the_migration_matches_the_models(engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import meterstream.entities.wallets  # noqa: F401
    from meterstream.entities.db import Base

    assert set(MY_TABLES) <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [x for x in diff if any(f"'{t}'" in repr(x) or f"table={t}" in repr(x) for t in MY_TABLES)] == []


def test_down_to_0008_and_up_again(fresh_url: str) -> None:
    from alembic import command

    from meterstream.entities.db import alembic_config, make_engine, migrate, session_factory

    engine = make_engine(url=fresh_url)
    migrate(engine=engine)
    sf = session_factory(engine)
    customer(sf)
    create_wallet(sf, WalletSpec(T, "c1"), [TopUp("paid", "1")])
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")
    names = set(inspect(engine).get_table_names())
    assert not names & set(MY_TABLES) and "coupons" in names
    migrate(engine=engine)
    create_wallet(sf, WalletSpec(T, "c1"), [TopUp("paid", "1")])
    engine.dispose()
