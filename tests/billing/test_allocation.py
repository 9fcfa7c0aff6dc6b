"""Per-subject shares of one invoice line (billing/allocation.py): hand-calculated splits and properties."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterstream.billing.allocation import apportion, round_half_away, split, subject_shares

D = Decimal


def test_three_equal_users_share_100_eur_the_first_in_id_order_gets_the_extra_cent() -> None:
    """100.00 / 3 = 33.333...: floors 33.33 x 3 = 99.99, one cent left, equal remainders -> first id."""
    assert split(D("100.00"), {"carol": 1, "alice": 1, "bob": 1}, "EUR") == {
        "alice": D("33.34"),
        "bob": D("33.33"),
        "carol": D("33.33"),
    }


def test_volume_priced_line_is_shared_by_quantity_never_negative() -> None:
    """Volume pricing: 1,000 units at 0.085 = 85.00 for the whole line (the per-event streaming deltas of
    the users would differ and can go negative when the volume tier drops). Shares by quantity:
    u1 500/1000 x 85.00 = 42.50, u2 300/1000 x 85.00 = 25.50, u3 200/1000 x 85.00 = 17.00."""
    shares = subject_shares(D("85.00"), {"u1": D("500"), "u2": D("300"), "u3": D("200")}, "EUR")
    assert [(s.subject, s.quantity, s.amount) for s in shares] == [
        ("u1", D("500"), D("42.50")),
        ("u2", D("300"), D("25.50")),
        ("u3", D("200"), D("17.00")),
    ]


def test_largest_remainder_not_first_in_order() -> None:
    """10.00 by quantities 1, 2, 4 (total 7), in cents: 1000/7 = 142.857, 285.714, 571.428.
    Floors 142 + 285 + 571 = 998, 2 cents left: remainders .857 (a), .714 (b), .428 (c) -> a and b.
    a 1.43, b 2.86, c 5.71 (sum 10.00)."""
    assert split(D("10.00"), {"a": 1, "b": 2, "c": 4}, "USD") == {"a": D("1.43"), "b": D("2.86"), "c": D("5.71")}


def test_half_cent_ties_go_in_subject_order() -> None:
    """0.05 by quantities 3, 3, 3, 1 (total 10): 1.5, 1.5, 1.5, 0.5 cents; floors 1+1+1+0 = 3, 2 left,
    all remainders 0.5 -> u1 and u2: 0.02, 0.02, 0.01, 0.00."""
    assert split(D("0.05"), {"u4": 1, "u3": 3, "u2": 3, "u1": 3}, "EUR") == {
        "u1": D("0.02"),
        "u2": D("0.02"),
        "u3": D("0.01"),
        "u4": D("0.00"),
    }


def test_zero_quantity_subject_gets_zero() -> None:
    """9.99 by 0 and 5: all of it to the user with quantity."""
    assert split(D("9.99"), {"idle": 0, "busy": 5}, "EUR") == {"busy": D("9.99"), "idle": D("0.00")}


def test_flat_fee_with_no_usage_splits_equally() -> None:
    """A 10.00 flat fee, nobody used anything: 10.00 / 3 -> 3.34, 3.33, 3.33 (first id gets the cent)."""
    assert split(D("10.00"), {"b": 0, "a": 0, "c": 0}, "EUR") == {"a": D("3.34"), "b": D("3.33"), "c": D("3.33")}


def test_credit_line_mirrors_a_charge() -> None:
    """-100.00 among three: -33.34, -33.33, -33.33 (the charge's split, negated)."""
    assert split(D("-100.00"), {"a": 1, "b": 1, "c": 1}, "EUR") == {
        "a": D("-33.34"),
        "b": D("-33.33"),
        "c": D("-33.33"),
    }


def test_currencies_without_and_with_three_minor_digits() -> None:
    """JPY has no minor unit: 100 yen / 3 -> 34, 33, 33. KWD has 3: 1.000 / 3 -> 0.334, 0.333, 0.333."""
    assert split(D("100"), {"a": 1, "b": 1, "c": 1}, "JPY") == {"a": D("34"), "b": D("33"), "c": D("33")}
    assert split(D("1.000"), {"a": 1, "b": 1, "c": 1}, "KWD") == {"a": D("0.334"), "b": D("0.333"), "c": D("0.333")}


@pytest.mark.parametrize(
    ("amount", "weights", "field"),
    [
        (D("10.00"), {"a": -1, "b": 2}, "weights[a]"),
        (D("10.005"), {"a": 1}, "amount"),
        (D("10.00"), {}, "weights"),
    ],
)
def test_bad_input_names_the_field(amount: Decimal, weights: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError) as caught:
        split(amount, weights, "EUR")
    assert str(caught.value).startswith(f"{field}:")


def test_float_refused() -> None:
    with pytest.raises(TypeError, match="float"):
        split(10.0, {"a": 1}, "EUR")  # type: ignore[arg-type]


def test_nothing_to_split_among_nobody() -> None:
    assert split(D("0.00"), {}, "EUR") == {}


def test_round_half_away_from_zero() -> None:
    """-1.5 -> -2, -0.5 -> -1, 0.5 -> 1, 1.5 -> 2, 2.5 -> 3; 0.4 -> 0, -0.6 -> -1 (over 5: 2/5, -3/5)."""
    assert [round_half_away(n, 2) for n in (-3, -1, 1, 3, 5)] == [-2, -1, 1, 2, 3]
    assert (round_half_away(2, 5), round_half_away(-3, 5)) == (0, -1)


def test_apportion_refuses_a_total_out_of_reach() -> None:
    """0.5 + 0.5 can become 0, 1 or 2 in whole units with each within one; 3 cannot."""
    with pytest.raises(ValueError, match=r"^total:"):
        apportion([1, 1], 2, 3)


cents = st.integers(min_value=-(10**12), max_value=10**12)
quantities = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=4),
    st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(units=cents, weights=quantities)
def test_shares_add_up_and_stay_within_one_cent_of_the_exact_proportion(
    units: int, weights: dict[str, Decimal]
) -> None:
    amount = Decimal(units).scaleb(-2)
    shares = split(amount, weights, "EUR")
    assert sum(shares.values()) == amount
    total = sum(weights.values())
    for subject, share in shares.items():
        exact = (
            Fraction(amount) * Fraction(weights[subject]) / Fraction(total)
            if total
            else Fraction(amount) / len(weights)
        )
        assert abs(Fraction(share) - exact) < Fraction(1, 100)
        if amount >= 0:
            assert share >= 0
        if total and weights[subject] == 0:
            assert share == 0


@settings(max_examples=100, deadline=None)
@given(units=cents, weights=quantities)
def test_input_order_does_not_matter(units: int, weights: dict[str, Decimal]) -> None:
    amount = Decimal(units).scaleb(-2)
    reversed_weights = dict(reversed(list(weights.items())))
    assert split(amount, weights, "EUR") == split(amount, reversed_weights, "EUR")
