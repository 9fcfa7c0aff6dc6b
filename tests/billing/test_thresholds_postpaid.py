"""billing/thresholds.py: the postpaid levels (percent of the credit limit, of the minimum commitment) and the soft
level of the `limit` command; bad metadata is named field by field and left out. Figures by hand."""

from __future__ import annotations

from decimal import Decimal

from meterstream.billing.thresholds import Rules, postpaid_crossed, rules_from_metadata, soft_limited

D = Decimal


def test_the_levels_are_read_from_metadata() -> None:
    rules, errors = rules_from_metadata(
        {
            "credit_limit": "250.50",
            "credit_limit_alert_percent": "80, 50",
            "credit_limit_soft_percent": "90",
            "commitment_alert_percent": "100",
        }
    )
    assert errors == []
    assert rules == Rules(
        credit_limit=D("250.50"), credit_percent=(D(80), D(50)), credit_soft_percent=D(90), commitment_percent=(D(100),)
    )
    assert rules.postpaid


def test_bad_levels_are_left_out_naming_the_field() -> None:
    rules, errors = rules_from_metadata(
        {
            "credit_limit_soft_percent": "120",
            "credit_limit": "100",
            "credit_limit_alert_percent": "0,50",
            "commitment_alert_percent": "x",
        }
    )
    assert errors == [
        "metadata.credit_limit_alert_percent: percentages above 0 (got '0,50')",
        "metadata.commitment_alert_percent: not a decimal number: 'x'",
        "metadata.credit_limit_soft_percent: a percentage above 0 and at most 100 (got 120)",
    ]
    assert rules == Rules(credit_limit=D(100))
    rules, errors = rules_from_metadata({"credit_limit_soft_percent": "90", "credit_limit_alert_percent": "50"})
    assert errors == [
        "metadata.credit_limit_alert_percent: needs metadata.credit_limit (a percentage of it)",
        "metadata.credit_limit_soft_percent: needs metadata.credit_limit (a percentage of it)",
    ]
    assert rules == Rules() and not rules.postpaid


def test_levels_are_reached_at_exactly_their_percentage() -> None:
    rules = Rules(
        credit_limit=D("250.50"),
        credit_percent=(D(80), D(50)),
        credit_soft_percent=D("90"),
        commitment_percent=(D(100), D("12.5")),
    )
    # 80% of 250.50 = 200.40; 50% = 125.25; 90% = 225.45; 12.5% of 200 = 25
    assert postpaid_crossed(rules, D("200.39"), None) == {"limit:50"}
    assert postpaid_crossed(rules, D("200.40"), D(200)) == {"limit:50", "limit:80", "commitment:12.5", "commitment:100"}
    assert postpaid_crossed(rules, D("24.999999"), D(200)) == set()
    assert postpaid_crossed(rules, D("25"), D(0)) == set()  # no commitment: no commitment level
    assert not soft_limited(rules, D("225.449999")) and soft_limited(rules, D("225.45"))
    assert not soft_limited(Rules(credit_limit=D(100)), D(1000))  # no soft level set


def test_a_number_with_too_many_digits_is_refused_naming_the_field() -> None:
    # 37 significant digits each (review finding: their product has 74, more than rating.money.EXACT's 60)
    long_limit, long_soft = "1000.123456789012345678901234567890123", "90.12345678901234567890123456789012345"
    rules, errors = rules_from_metadata({"credit_limit": long_limit, "credit_limit_soft_percent": long_soft})
    assert errors == [
        f"metadata.credit_limit: at most 30 significant digits (got {long_limit!r})",
        f"metadata.credit_limit_soft_percent: at most 30 significant digits (got {long_soft!r})",
    ]
    assert rules == Rules()
    # 30 digits are fine
    rules, errors = rules_from_metadata({"credit_limit": "1000.12345678901234567890123456"})
    assert errors == [] and rules.credit_limit == D("1000.12345678901234567890123456")


def test_long_operands_are_compared_exactly_never_raising() -> None:
    # built directly (past the metadata check): 1% of 3.3333333333333333333333333333333333333 (38 digits)
    # = 0.033333333333333333333333333333333333333; used x 100 against 1 x limit, exactly
    third = D("3.3333333333333333333333333333333333333")
    rules = Rules(credit_limit=third, credit_percent=(D("1"),), credit_soft_percent=D("99.999999999999999999999999"))
    assert postpaid_crossed(rules, D("0.033333333333333333333333333333333333333"), None) == {"limit:1"}
    assert postpaid_crossed(rules, D("0.033333333333333333333333333333333333332"), None) == set()
    # 99.999999999999999999999999% of 3.3333333333333333333333333333333333333 =
    # 3.3333333333333333333333333333333333333 - 3.3333333333333333333333333333333333333e-26
    # = 3.333333333333333333333333299999999999966666666666666666666666667 (64 digits: inexact at 60)
    exact = D("3.333333333333333333333333299999999999966666666666666666666666667")
    below = D("3.333333333333333333333333299999999999966666666666666666666666666")  # 1e-63 less
    assert soft_limited(rules, exact) and not soft_limited(rules, below)
