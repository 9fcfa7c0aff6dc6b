"""Coupons and discounts (billing/discounts.py): every figure by hand in the docstrings."""

from __future__ import annotations

from decimal import Decimal

import pytest

from meterstream.billing.discounts import Coupon, CouponUse, apply_discounts, is_active
from meterstream.billing.totals import TotalsLine

D = Decimal


def lines(*amounts: tuple[str, str]) -> list[TotalsLine]:
    return [TotalsLine(str(i + 1), code, D(amount)) for i, (code, amount) in enumerate(amounts)]


def pct(code: str, percent: str, **kw: object) -> Coupon:
    return Coupon(code, "percentage", percent_off=D(percent), **kw)  # type: ignore[arg-type]


def fixed(code: str, amount: str, currency: str = "EUR", **kw: object) -> Coupon:
    return Coupon(code, "fixed", amount_off=D(amount), currency=currency, **kw)  # type: ignore[arg-type]


def test_percentage_on_the_whole_invoice_allocated_pro_rata() -> None:
    """120.00 + 30.00 = 150.00; 10 % = 15.00, shared 120:30 -> 12.00 and 3.00."""
    result = apply_discounts(lines(("api_calls", "120.00"), ("base", "30.00")), [CouponUse(pct("TEN", "10"))], "EUR")
    [d] = result.discounts
    assert (d.amount, d.percentage, d.lines) == (D("15.00"), D("0.1"), {"1": D("12.00"), "2": D("3.00")})
    assert result.line_discounts == {"1": D("12.00"), "2": D("3.00")}
    assert result.discount_total == D("15.00")


def test_percentage_rounds_once_half_away_from_zero() -> None:
    """0.25 x 10 % = 0.025 -> 0.03 (half away from zero)."""
    result = apply_discounts(lines(("sms", "0.25")), [CouponUse(pct("TEN", "10"))], "EUR")
    assert result.discount_total == D("0.03")


def test_two_percentage_coupons_chain() -> None:
    """100.00: 10 % = 10.00, then 10 % of the 90.00 left = 9.00; 19.00 in all (not 20.00)."""
    result = apply_discounts(lines(("base", "100.00")), [CouponUse(pct("A", "10")), CouponUse(pct("B", "10"))], "EUR")
    assert [d.amount for d in result.discounts] == [D("10.00"), D("9.00")]
    assert result.discount_total == D("19.00")


def test_line_coupons_before_invoice_coupons_published_example() -> None:
    """flexprice's worked example (docs.flexprice.io, billing calculation order): API calls 80.00, flat fee
    20.00; line coupon 25 % off API calls = 20.00 (running total 80.00), then 10.00 off the subscription
    (running total 70.00). The invoice coupon is listed first here and still applies second. The 10.00 is
    shared by what is left, 60.00 : 20.00 -> 7.50 and 2.50."""
    result = apply_discounts(
        lines(("api_calls", "80.00"), ("fee", "20.00")),
        [
            CouponUse(fixed("TEN_OFF", "10.00", "USD")),
            CouponUse(pct("API25", "25", applies_to=frozenset({"api_calls"}))),
        ],
        "USD",
    )
    assert [(d.code, d.amount) for d in result.discounts] == [("API25", D("20.00")), ("TEN_OFF", D("10.00"))]
    assert result.discounts[1].lines == {"1": D("7.50"), "2": D("2.50")}
    assert result.line_discounts == {"1": D("27.50"), "2": D("2.50")}
    assert result.discount_total == D("30.00")


def test_fixed_once_larger_than_the_invoice_carries_over_until_used_up() -> None:
    """50.00 once on a 30.00 invoice: takes 30.00, 20.00 left for the next invoice; next invoice 45.00:
    takes the 20.00 left, used up."""
    coupon = fixed("WELCOME", "50.00")
    first = apply_discounts(lines(("base", "30.00")), [CouponUse(coupon)], "EUR").discounts[0]
    assert (first.amount, first.amount_remaining, first.exhausted) == (D("30.00"), D("20.00"), False)
    use = CouponUse(coupon, periods_used=first.periods_used, amount_remaining=first.amount_remaining)
    assert is_active(use)
    second = apply_discounts(lines(("base", "45.00")), [use], "EUR").discounts[0]
    assert (second.amount, second.amount_remaining, second.exhausted) == (D("20.00"), D("0.00"), True)
    assert not is_active(CouponUse(coupon, periods_used=2, amount_remaining=D("0")))


def test_fixed_repeating_loses_the_unused_rest() -> None:
    """50.00 for 3 periods on a 30.00 invoice: takes 30.00, the 20.00 rest is lost; 2 periods remain."""
    [d] = apply_discounts(
        lines(("base", "30.00")), [CouponUse(fixed("M3", "50.00", duration="repeating", duration_periods=3))], "EUR"
    ).discounts
    assert (d.amount, d.amount_remaining, d.periods_remaining, d.exhausted) == (D("30.00"), None, 2, False)


def test_discounts_never_make_the_subtotal_negative_and_skip_credit_lines() -> None:
    """Usage 100.00 and a credit -90.00: subtotal 10.00. A 50.00 fixed coupon takes 10.00 (not 50.00), all
    of it from the usage line (the credit is not discounted); a 100 % coupon after it finds nothing left."""
    result = apply_discounts(
        lines(("usage", "100.00"), ("credit", "-90.00")),
        [CouponUse(fixed("FIFTY", "50.00", duration="forever")), CouponUse(pct("ALL", "100", duration="forever"))],
        "EUR",
    )
    assert [d.amount for d in result.discounts] == [D("10.00"), D("0.00")]
    assert result.line_discounts == {"1": D("10.00"), "2": D("0.00")}


def test_fixed_discount_shared_among_equal_lines_by_largest_remainder() -> None:
    """0.10 over three lines of 1.00: 3.33 cents each, floors 3 + 3 + 3 = 9, the cent left to line 1."""
    result = apply_discounts(lines(("a", "1.00"), ("b", "1.00"), ("c", "1.00")), [CouponUse(fixed("X", "0.10"))], "EUR")
    assert result.line_discounts == {"1": D("0.04"), "2": D("0.03"), "3": D("0.03")}


def test_durations_and_the_periods_already_used() -> None:
    """once: the first invoice only; repeating 3: invoices 1-3 (periods_used 0, 1, 2); forever: always."""
    once = pct("ONCE", "10")
    three = pct("THREE", "10", duration="repeating", duration_periods=3)
    ever = pct("EVER", "10", duration="forever")
    assert [is_active(CouponUse(once, periods_used=n)) for n in (0, 1)] == [True, False]
    assert [is_active(CouponUse(three, periods_used=n)) for n in (0, 2, 3)] == [True, True, False]
    assert is_active(CouponUse(ever, periods_used=1000))
    result = apply_discounts(
        lines(("base", "100.00")),
        [CouponUse(once, periods_used=1), CouponUse(three, periods_used=2), CouponUse(ever, periods_used=7)],
        "EUR",
    )
    # ONCE is over and not listed; THREE applies a last time (10.00), EVER takes 10 % of 90.00 = 9.00
    assert [(d.code, d.amount, d.periods_remaining, d.periods_used, d.exhausted) for d in result.discounts] == [
        ("THREE", D("10.00"), 0, 3, True),
        ("EVER", D("9.00"), None, 8, False),
    ]


def test_a_coupon_for_lines_the_invoice_lacks_takes_nothing_but_uses_its_period() -> None:
    """10 % off `storage` on an invoice with only api_calls: 0.00, and the once coupon is spent."""
    [d] = apply_discounts(
        lines(("api_calls", "40.00")), [CouponUse(pct("S", "10", applies_to=frozenset({"storage"})))], "EUR"
    ).discounts
    assert (d.amount, d.exhausted, d.lines) == (D("0.00"), True, {})


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: pct("P", "150"), "percent_off"),
        (lambda: pct("P", "0"), "percent_off"),
        (lambda: pct("P", "-5"), "percent_off"),
        (lambda: fixed("F", "-1.00"), "amount_off"),
        (lambda: fixed("F", "1.005"), "amount_off"),
        (lambda: Coupon("F", "fixed", amount_off=D("5")), "currency"),
        (lambda: pct("P", "10", duration="repeating"), "duration_periods"),
        (lambda: pct("P", "10", duration="forever", duration_periods=2), "duration_periods"),
        (lambda: pct("P", "10", duration="weekly"), "duration"),
        (lambda: pct("P", "10", applies_to=frozenset()), "applies_to"),
        (lambda: pct("", "10"), "code"),
        (lambda: Coupon("K", "bogus", percent_off=D("1")), "kind"),  # type: ignore[arg-type]
        (lambda: CouponUse(pct("P", "10"), periods_used=-1), "periods_used"),
        (lambda: CouponUse(fixed("F", "5.00"), amount_remaining=D("6.00")), "amount_remaining"),
        (lambda: CouponUse(pct("P", "10"), amount_remaining=D("1.00")), "amount_remaining"),
    ],
)
def test_invalid_coupons_name_the_field(make: object, field: str) -> None:
    with pytest.raises(ValueError) as caught:
        make()  # type: ignore[operator]
    assert str(caught.value).startswith(f"{field}:")


def test_fixed_coupon_in_another_currency_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^coupons\[0\]\.currency: EUR coupon on a USD invoice"):
        apply_discounts(lines(("base", "10.00")), [CouponUse(fixed("F", "5.00", "EUR"))], "USD")


def test_duplicate_line_keys_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^lines\[1\]\.key:"):
        apply_discounts([TotalsLine("1", "a", D("1.00")), TotalsLine("1", "b", D("2.00"))], [], "EUR")


def test_equal_remainders_go_in_line_order_not_key_text_order() -> None:
    """0.01 over two lines of 1.00: half a cent each; the cent goes to the line that comes first on the
    invoice whatever its key ("10" before "2", then "2" before "10")."""
    ten_first = [TotalsLine("10", "a", D("1.00")), TotalsLine("2", "a", D("1.00"))]
    two_first = [TotalsLine("2", "a", D("1.00")), TotalsLine("10", "a", D("1.00"))]
    coupon = [CouponUse(fixed("X", "0.01"))]
    assert apply_discounts(ten_first, coupon, "EUR").line_discounts == {"10": D("0.01"), "2": D("0.00")}
    assert apply_discounts(two_first, coupon, "EUR").line_discounts == {"2": D("0.01"), "10": D("0.00")}
