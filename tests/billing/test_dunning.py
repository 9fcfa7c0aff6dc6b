"""The dunning rules (billing/dunning.py): which steps are due on which day, late fees to the minor unit, the
reactivation. Expected values are worked by hand in the comments."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterstream.billing.dunning import (
    LateFee,
    OverdueInvoice,
    Policy,
    PolicyError,
    late_fee_amount,
    reactivation_due,
    steps_due,
)

DUE = date(2026, 10, 15)
INVOICE = OverdueInvoice("inv-9", "EUR", DUE, Decimal("100.00"))
POLICY = Policy((3, 7, 14), LateFee("percent", Decimal(2)), suspend_after_last=True)


def names(steps) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.name for s in steps]


def test_the_schedule_of_the_worked_example() -> None:
    # due 10-15: reminders on 10-18 (+3), 10-22 (+7), 10-29 (+14, the last); suspension the day after, 10-30;
    # 2 % late fee after 30 days (11-14) and every 30 days after (12-14): 2 % of 100.00 = 2.00
    assert steps_due(INVOICE, POLICY, date(2026, 10, 17)) == []
    (r1,) = steps_due(INVOICE, POLICY, date(2026, 10, 18))
    assert (r1.name, r1.due_on, r1.last) == ("reminder:1", date(2026, 10, 18), False)
    done = {"reminder:1"}
    assert names(steps_due(INVOICE, POLICY, date(2026, 10, 29), done)) == ["reminder:2", "reminder:3"]
    assert steps_due(INVOICE, POLICY, date(2026, 10, 29), done)[-1].last is True
    done |= {"reminder:2", "reminder:3"}
    (suspend,) = steps_due(INVOICE, POLICY, date(2026, 10, 30), done)
    assert (suspend.kind, suspend.due_on) == ("suspend", date(2026, 10, 30))
    done.add("suspend")
    assert steps_due(INVOICE, POLICY, date(2026, 11, 13), done) == []
    (fee,) = steps_due(INVOICE, POLICY, date(2026, 11, 14), done)
    assert (fee.name, fee.due_on, fee.amount) == ("late_fee:1", date(2026, 11, 14), Decimal("2.00"))
    done.add("late_fee:1")
    # 50.00 paid meanwhile: the second fee is 2 % of what is still due, 1.00
    half = OverdueInvoice("inv-9", "EUR", DUE, Decimal("50.00"))
    (fee2,) = steps_due(half, POLICY, date(2026, 12, 14), done)
    assert (fee2.name, fee2.due_on, fee2.amount) == ("late_fee:2", date(2026, 12, 14), Decimal("1.00"))


def test_a_late_run_does_every_step_with_its_own_day_in_order() -> None:
    steps = steps_due(INVOICE, POLICY, date(2026, 11, 20))
    assert [(s.name, s.due_on) for s in steps] == [
        ("reminder:1", date(2026, 10, 18)),
        ("reminder:2", date(2026, 10, 22)),
        ("reminder:3", date(2026, 10, 29)),
        ("suspend", date(2026, 10, 30)),
        ("late_fee:1", date(2026, 11, 14)),
    ]


def test_nothing_due_no_steps_and_no_suspension_without_the_option() -> None:
    paid = OverdueInvoice("inv-9", "EUR", DUE, Decimal("0.00"))
    assert steps_due(paid, POLICY, date(2027, 1, 1)) == []
    plain = Policy((3, 7, 14))
    assert names(steps_due(INVOICE, plain, date(2027, 1, 1))) == ["reminder:1", "reminder:2", "reminder:3"]
    # no reminders but suspension: the day after the due date
    assert [(s.name, s.due_on) for s in steps_due(INVOICE, Policy((), suspend_after_last=True), date(2026, 10, 16))
            ] == [("suspend", date(2026, 10, 16))]  # fmt: skip


def test_late_fee_once_fixed_and_capped() -> None:
    once = Policy((), LateFee("fixed", Decimal("15.00"), after_days=10, period_days=None))
    assert [(s.name, s.due_on, s.amount) for s in steps_due(INVOICE, once, date(2027, 6, 1))] == [
        ("late_fee:1", date(2026, 10, 25), Decimal("15.00"))
    ]
    capped = Policy((), LateFee("percent", Decimal("1.5"), after_days=0, period_days=7, max_periods=3))
    # 10-15, 10-22, 10-29; 1.5 % of 100.00 = 1.50 each; the cap stops the fourth (11-05)
    assert [(s.due_on, s.amount) for s in steps_due(INVOICE, capped, date(2026, 12, 1))] == [
        (date(2026, 10, 15), Decimal("1.50")), (date(2026, 10, 22), Decimal("1.50")),
        (date(2026, 10, 29), Decimal("1.50")),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "value", "due", "currency", "expected"),
    [
        ("percent", "2", "33.33", "EUR", "0.67"),  # 0.6666 -> 0.67
        ("percent", "1", "0.50", "EUR", "0.01"),  # 0.005 -> half away from zero: 0.01
        ("percent", "1", "0.49", "EUR", "0.00"),  # 0.0049 -> 0.00
        ("percent", "2", "1234", "JPY", "25"),  # 24.68 yen -> 25
        ("percent", "0.5", "10.001", "KWD", "0.050"),  # 0.050005 -> 0.050 (3 digits)
        ("fixed", "5.00", "1000.00", "EUR", "5.00"),
        ("fixed", "500", "1.00", "JPY", "500"),
    ],
)
def test_late_fee_amounts(kind: str, value: str, due: str, currency: str, expected: str) -> None:
    amount = late_fee_amount(LateFee(kind, Decimal(value)), Decimal(due), currency)  # type: ignore[arg-type]
    assert str(amount) == expected


def test_a_fee_that_rounds_to_zero_is_no_step() -> None:
    small = OverdueInvoice("inv-1", "EUR", DUE, Decimal("0.40"))  # 1 % of 0.40 = 0.004 -> 0.00
    assert steps_due(small, Policy((), LateFee("percent", Decimal(1), after_days=0)), DUE) == []


def test_bad_policies_name_the_field() -> None:
    cases = [
        (lambda: Policy((7, 3)), "reminder_days"),
        (lambda: Policy((0, 3)), "reminder_days[0]"),
        (lambda: Policy((3, True)), "reminder_days[1]"),  # type: ignore[arg-type]
        (lambda: LateFee("interest", Decimal(1)), "late_fee.kind"),  # type: ignore[arg-type]
        (lambda: LateFee("percent", Decimal(0)), "late_fee.value"),
        (lambda: LateFee("percent", Decimal(101)), "late_fee.value"),
        (lambda: LateFee("percent", 0.5), "late_fee.value"),  # type: ignore[arg-type]  # a float: refused
        (lambda: LateFee("fixed", Decimal(1), period_days=0), "late_fee.period_days"),
        (lambda: LateFee("fixed", Decimal(1), after_days=-1), "late_fee.after_days"),
        (lambda: LateFee("fixed", Decimal(1), max_periods=0), "late_fee.max_periods"),
    ]
    for make, field in cases:
        with pytest.raises(PolicyError) as exc:
            make()
        assert exc.value.field == field
    with pytest.raises(PolicyError, match="more decimals than EUR"):
        late_fee_amount(LateFee("fixed", Decimal("5.001")), Decimal(100), "EUR")


def test_reactivation_waits_for_every_suspended_invoice() -> None:
    today = date(2026, 11, 2)
    assert reactivation_due([], today) is None
    assert reactivation_due([("a", Decimal("0.00")), ("b", Decimal("10.00"))], today) is None
    step = reactivation_due([("a", Decimal("0.00")), ("b", Decimal("0"))], today)
    assert step is not None and (step.name, step.due_on) == ("reactivate", today)


policies = st.builds(
    Policy,
    st.lists(st.integers(1, 60), max_size=5, unique=True).map(lambda d: tuple(sorted(d))),
    st.none()
    | st.builds(
        LateFee,
        st.sampled_from(["fixed", "percent"]),
        st.decimals("0.01", "20", places=2),
        st.integers(0, 40),
        st.none() | st.integers(1, 40),
        st.none() | st.integers(1, 5),
    ),
    st.booleans(),
)


@given(policies, st.integers(0, 200), st.integers(0, 200), st.decimals("0.01", "100000", places=2))
def test_runs_on_any_days_do_each_step_once(policy: Policy, d1: int, d2: int, due: Decimal) -> None:
    """Running on day a then on day b >= a (skipping what a did) does exactly what one run on day b does."""
    invoice = OverdueInvoice("i", "EUR", DUE, due)
    a, b = DUE + timedelta(days=min(d1, d2)), DUE + timedelta(days=max(d1, d2))
    first = steps_due(invoice, policy, a)
    second = steps_due(invoice, policy, b, done={s.name for s in first})
    once = steps_due(invoice, policy, b)
    assert sorted(names(first) + names(second)) == sorted(names(once))
    assert len(set(names(once))) == len(once)
    assert all(s.due_on <= b for s in once) and all(s.due_on <= a for s in first)
    reminders = [s for s in once if s.kind == "reminder"]
    assert len(reminders) == sum(1 for d in policy.reminder_days if DUE + timedelta(days=d) <= b)
