"""Interval top-ups (entities/wallets.py `interval_top_ups`, billing/wallet_intervals.py) on SQLite and PostgreSQL,
with the days and credits worked out on a calendar: each anniversary written once, never the wallet's creation day,
from the rule's own day, before its expiry, in the customer's time zone; not published to the processor."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from meterstream.entities.customers import put_customer
from meterstream.entities.wallets import (
    WalletRow,
    WalletSpec,
    create_wallet,
    customer_balances,
    get_wallet,
    interval_top_ups,
    list_transactions,
    terminate_wallet,
    update_wallet,
    wallet_doc,
)
from meterstream.schemas.entities import CustomerDoc

T = "acme"
MONTHLY = {"trigger": "interval", "interval": "monthly", "method": "fixed", "paid_credits": "50",
           "granted_credits": "5"}  # fmt: skip


def customer(sf, name: str = "c1", timezone: str = "UTC") -> None:  # type: ignore[no-untyped-def]
    put_customer(sf, CustomerDoc(tenant=T, external_id=name, name=name, version=0, currency="EUR", timezone=timezone))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def credits(sf, wallet_id: str) -> list[tuple[str, str, str | None]]:  # type: ignore[no-untyped-def]
    return [(t.kind, format(t.credits, "f"), t.reference) for t in list_transactions(sf, T, wallet_id)]


def test_monthly_on_the_wallet_s_anniversary_each_once(sf) -> None:  # type: ignore[no-untyped-def]
    """Wallet and rule made 15 October 2026 (no started_at: the wallet's day): not that day; 15 November is due on
    3 December, 15 December not yet; a second run writes nothing; on 20 January 2027, 15 December and 15 January:
    three anniversaries in all, 3 x 50 paid + 3 x 5 granted."""
    customer(sf)
    w, _ = create_wallet(sf, WalletSpec(T, "c1", rules=[MONTHLY]), at=at("2026-10-15T09:00:00+00:00"))
    rule_id = w.rules[0].id
    assert w.rules[0].interval == "monthly" and w.rules[0].threshold_credits is None
    assert interval_top_ups(sf, at("2026-10-15T23:00:00+00:00")) == {}  # its creation day: never
    assert interval_top_ups(sf, at("2026-12-03T12:00:00+00:00")) == {"written": 1, "wallets": 1}
    assert credits(sf, w.id) == [("paid", "50", f"interval:{rule_id}:2026-11-15:paid"),
                                 ("granted", "5", f"interval:{rule_id}:2026-11-15:granted")]  # fmt: skip
    assert interval_top_ups(sf, at("2026-12-03T12:00:00+00:00")) == {"repeated": 1}
    assert interval_top_ups(sf, at("2027-01-20T00:00:00+00:00")) == {"repeated": 1, "written": 2, "wallets": 1}
    assert [r for _, _, r in credits(sf, w.id)][::2] == [f"interval:{rule_id}:{d}:paid" for d in
                                                        ("2026-11-15", "2026-12-15", "2027-01-15")]  # fmt: skip
    # the balance counts them like any settled top-up: 3 x 55 = 165 credits at rate 1 = 165.00 EUR = 16500 cents
    (eur,) = customer_balances(sf, T, "c1", lambda currency, bounds: [Decimal(0)] * (len(bounds) - 1),
                               now=at("2027-01-20T00:00:00+00:00"))  # fmt: skip
    assert eur.wallets[0].ongoing.balance == 16500


def test_started_at_the_rule_s_own_day_the_time_zone_and_expiry(sf) -> None:  # type: ignore[no-untyped-def]
    """A weekly rule added on Tuesday 1 December 2026 with started_at Thursday 3 December 00:30 in Auckland (NZDT,
    UTC+13: 2 December 11:30 UTC), expiring 17 December 00:00 Auckland. The days are Auckland's: 3 and 10
    December (17 December starts at its expiry: not due), whatever the UTC date of the run."""
    customer(sf, "nz", "Pacific/Auckland")
    w, _ = create_wallet(sf, WalletSpec(T, "nz"), at=at("2026-11-01T00:00:00+00:00"))
    rule = {**MONTHLY, "interval": "weekly", "granted_credits": None, "started_at": "2026-12-03T00:30:00+13:00",
            "expiration_at": "2026-12-17T00:00:00+13:00"}  # fmt: skip
    update_wallet(sf, T, w.id, rules=[rule], at=at("2026-11-30T20:00:00+00:00"))  # 1 December in Auckland
    # 2 December 12:00 UTC is 3 December 01:00 in Auckland: the first anniversary is due
    assert interval_top_ups(sf, at("2026-12-02T12:00:00+00:00")) == {"written": 1, "wallets": 1}
    assert interval_top_ups(sf, at("2026-12-31T00:00:00+00:00")) == {"repeated": 1, "written": 1, "wallets": 1}
    days = [r.split(":")[2] for _, _, r in credits(sf, w.id)]
    assert days == ["2026-12-03", "2026-12-10"]  # paid only (no granted credits)


def test_no_back_pay_for_anniversaries_before_the_rule_and_none_for_ended_wallets(sf) -> None:  # type: ignore[no-untyped-def]
    """A rule added on 3 December 2026 to a wallet made 5 May 2026 (monthly on the 5th): 5 June ... 5 November
    were never owed; the first is 5 December. A terminated wallet gets nothing, an interval rule goes nowhere near
    the processor (only threshold rules are in the wallet's document)."""
    customer(sf)
    w, _ = create_wallet(sf, WalletSpec(T, "c1"), at=at("2026-05-05T10:00:00+00:00"))
    update_wallet(sf, T, w.id, rules=[MONTHLY], at=at("2026-12-03T08:00:00+00:00"))
    assert get_wallet(sf, T, w.id).rules[0].created_at == at("2026-12-03T08:00:00+00:00")
    assert interval_top_ups(sf, at("2026-12-04T00:00:00+00:00")) == {}
    assert interval_top_ups(sf, at("2026-12-05T00:00:00+00:00")) == {"written": 1, "wallets": 1}
    with sf() as s:
        assert wallet_doc(s, s.query(WalletRow).filter_by(wallet_id=w.id).one()).top_up_rules == []
    terminate_wallet(sf, T, w.id, at=at("2026-12-20T00:00:00+00:00"))
    assert interval_top_ups(sf, at("2027-03-01T00:00:00+00:00")) == {}
    assert len(credits(sf, w.id)) == 2
