"""The pure wallet rule (billing/wallet_balance.py): consumption by priority then expiry, expiry of what is
left, voids, usage the wallets cannot cover, what counts at one instant, and the rounding of usage pieces.
Every expected figure is worked by hand in the comments (minor units: 1000 = 10.00)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meterstream.billing.wallet_balance import Draw, Lot, WalletTerms, balances, usage_draws


def d(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 9, day, hour, tzinfo=UTC)


NOW = d(30)
A = WalletTerms("A", priority=1, started_at=d(1))
B = WalletTerms("B", priority=2, started_at=d(1))


def usage(day: int, units: int) -> Draw:
    return Draw(d(day), units, "usage")


def test_priority_then_soonest_expiry_then_the_next_wallet_then_uncovered() -> None:
    lots = [Lot("A2", "A", 2000, d(1)), Lot("A1", "A", 1000, d(1), expires_at=d(10)), Lot("B1", "B", 5000, d(1))]
    draws = [usage(5, 1500), usage(12, 2500), Draw(d(15), 500, "void", "B"), usage(20, 4000)]
    out, uncovered = balances([A, B], lots, draws, NOW)
    # 09-05 1500: A1 first (same wallet, ends soonest) 1000, then A2 500 -> A1 0, A2 1500
    # 09-10 A1 ends with 0 left: nothing expires
    # 09-12 2500: A2 1500, then B1 1000 -> B1 4000;  09-15 void 500 on B -> B1 3500
    # 09-20 4000: B1 3500, 500 uncovered
    a, b = out["A"], out["B"]
    assert (a.inbound, a.consumed, a.expired, a.voided, a.balance) == (3000, 3000, 0, 0, 0)
    assert (b.inbound, b.consumed, b.expired, b.voided, b.balance) == (5000, 4500, 0, 500, 0)
    assert uncovered == 500
    assert [(h.at.day, h.kind, h.units, h.balance) for h in b.history] == [
        (1, "inbound", 5000, 5000), (12, "consumed", 1000, 4000), (15, "voided", 500, 3500),
        (20, "consumed", 3500, 0)]  # fmt: skip


def test_what_is_left_of_a_lot_expires_at_its_end_and_later_usage_skips_it() -> None:
    lots = [Lot("A1", "A", 1000, d(1), expires_at=d(10)), Lot("A2", "A", 2000, d(1))]
    out, uncovered = balances([A], lots, [usage(5, 300), usage(12, 500)], NOW)
    # 09-05 300 from A1 (700 left); 09-10 A1 ends: 700 expired; 09-12 500 from A2 (1500 left)
    a = out["A"]
    assert (a.inbound, a.consumed, a.expired, a.balance, uncovered) == (3000, 800, 700, 1500, 0)
    assert [(h.at.day, h.kind, h.units, h.balance) for h in a.history] == [
        (1, "inbound", 1000, 1000), (1, "inbound", 2000, 3000), (5, "consumed", 300, 2700),
        (10, "expired", 700, 2000), (12, "consumed", 500, 1500)]  # fmt: skip


def test_at_one_instant_a_lot_ends_before_usage_draws() -> None:
    lots = [Lot("A1", "A", 1000, d(1), expires_at=d(10))]
    out, uncovered = balances([A], lots, [usage(10, 400)], NOW)
    assert (out["A"].expired, out["A"].consumed, uncovered) == (1000, 0, 400)


def test_a_wallet_ending_ends_its_lots_and_a_wallet_covers_no_usage_before_it_started() -> None:
    late = WalletTerms("L", priority=1, started_at=d(10), ends_at=d(20))  # terminated (or expired) on 09-20
    lots = [Lot("L1", "L", 1000, d(10))]
    out, uncovered = balances([late], lots, [usage(5, 200), usage(15, 300), usage(25, 100)], NOW)
    # 09-05: before L started -> uncovered 200; 09-15: 300 from L1 (700 left); 09-20: 700 expire; 09-25: uncovered 100
    assert (out["L"].consumed, out["L"].expired, out["L"].balance, uncovered) == (300, 700, 0, 300)


def test_lots_and_draws_after_now_do_not_count() -> None:
    lots = [Lot("A1", "A", 1000, d(1)), Lot("A2", "A", 500, d(29, 12))]
    out, _ = balances([A], lots, [usage(29, 100), Draw(datetime(2026, 10, 1, tzinfo=UTC), 999, "usage")],
                      d(29, 6))  # fmt: skip
    # at 09-29 06:00 A2 (settled 12:00) is not there yet; the 10-01 draw is in the future
    assert (out["A"].inbound, out["A"].consumed, out["A"].balance) == (1000, 100, 900)


def test_a_settled_lot_covers_usage_since_its_wallet_started() -> None:
    out, uncovered = balances([A], [Lot("A1", "A", 1000, d(20))], [usage(5, 600)], NOW)
    # the usage of 09-05 is drawn when it happened, before the top-up of 09-20: the top-up did not exist
    assert (out["A"].consumed, uncovered) == (0, 600)


def test_refused_inputs_name_the_field() -> None:
    with pytest.raises(ValueError, match="lots: lot 'x' names an unknown wallet"):
        balances([A], [Lot("x", "Z", 1, d(1))], [], NOW)
    with pytest.raises(ValueError, match=r"lots: .* positive"):
        balances([A], [Lot("x", "A", 0, d(1))], [], NOW)
    with pytest.raises(ValueError, match="draws: "):
        balances([A], [], [Draw(d(2), -1, "usage")], NOW)


def test_usage_pieces_draw_the_difference_of_rounded_running_totals() -> None:
    # pieces of 0.004, 0.004, 0.004 EUR: running totals 0.004, 0.008, 0.012 -> rounded 0, 1, 1 cent:
    # the draws are 0, 1, 0 cents (1 cent = round(0.012)); rounding each piece would give 0 + 0 + 0
    bounds = [d(1), d(2), d(3), d(4)]
    assert usage_draws(bounds, [0, 1, 1]) == [Draw(d(2), 1, "usage")]
    # a correction (the running total falls back) draws nothing until the total passes the old one again
    assert usage_draws(bounds, [5, 3, 7]) == [Draw(d(1), 5, "usage"), Draw(d(3), 2, "usage")]
