"""Fixed, one-time, installment and minimum lines of a subscription, period by period (billing/charges.py).

Every expected amount is worked out by hand in the comments (the day rule and rounding of
docs/billing.md: days [a, b) of an N-day period cost round(fee x b / N) - round(fee x a / N)).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterstream.billing.charges import SubscriptionCharges
from meterstream.billing.plans import lookup_from
from meterstream.billing.proration import prorated
from meterstream.schemas.entities import (
    FixedCharge,
    InstallmentCharge,
    OneTimeCharge,
    Phase,
    PlanVersionDoc,
    SubscriptionDoc,
)

D = Decimal


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def plan(code: str, fee: str | None, timing: str = "advance", version: int = 1, **kw: object) -> PlanVersionDoc:
    if fee is not None:
        kw["fixed"] = [FixedCharge(code="base", name="Base fee", amount=D(fee), timing=timing)]
    kw.setdefault("currency", "USD")
    return PlanVersionDoc(tenant="t", code=code, version=version, name=code.title(), **kw)


def sub(*phases: Phase, **kw: object) -> SubscriptionDoc:
    return SubscriptionDoc(tenant="t", external_id="sub-1", customer="c-1", version=1, phases=list(phases), **kw)


def phase(code: str, start: datetime, end: datetime | None = None, version: int = 1, **kw: object) -> Phase:
    return Phase(plan_code=code, plan_version=version, start=start, end=end, **kw)


def amounts(lines: list) -> list[tuple[str, str, str]]:
    return [(line.kind, line.plan, str(line.amount)) for line in lines]


def invoice(charges: SubscriptionCharges, at: datetime, usage: Decimal | None = None) -> list:
    return charges.lines(charges.period_containing(at), usage)


def test_arrears_upgrade_matches_lago() -> None:
    """Lago's upgrade example (getlago.com/docs/guide/subscriptions/upgrades-downgrades, in arrears):
    Plan A €100 from January 1st, Plan B €200 from January 15th: 14/31 x 100 = 45.16, 17/31 x 200 =
    109.68. Here in Paris time: the change at 09:00Z is 10:00 on the 15th there."""
    lookup = lookup_from([plan("a", "100", "arrears"), plan("b", "200", "arrears")])
    s = sub(phase("a", utc(2025, 12, 31, 23), utc(2026, 1, 15, 9)), phase("b", utc(2026, 1, 15, 9)))
    charges = SubscriptionCharges(s, lookup, "Europe/Paris")
    a, b = invoice(charges, utc(2026, 1, 20))
    assert (a.plan, a.quantity, a.amount, a.period_days, a.timing) == ("a@1", 14, D("45.16"), 31, "arrears")
    assert (b.plan, b.quantity, b.amount) == ("b@1", 17, D("109.68"))
    # the lines cover local days: January 1st 00:00 Paris = Dec 31 23:00Z; the 15th 00:00 Paris = 14th 23:00Z
    assert (a.start, a.end, b.start, b.end) == (
        utc(2025, 12, 31, 23),
        utc(2026, 1, 14, 23),
        utc(2026, 1, 14, 23),
        utc(2026, 1, 31, 23),
    )
    assert b.to_json()["start"] == "2026-01-14T23:00:00Z" and b.to_json()["amount"] == "109.68"
    # February: B in full, 200.00
    assert amounts(invoice(charges, utc(2026, 2, 10))) == [("fixed", "b@1", "200.00")]


def test_advance_upgrade_matches_stripe() -> None:
    """Stripe's proration example (stripe.com/docs/billing/subscriptions/prorations): 10 USD plan, upgrade
    to 20 USD halfway: -5 USD unused time, +10 USD remaining time. April has 30 days; the change on April
    16 leaves 15 of them. With May billed in advance the April invoice is -5 + 10 + 20 = 25.00."""
    lookup = lookup_from([plan("a", "10"), plan("b", "20")])
    s = sub(phase("a", utc(2026, 2, 1), utc(2026, 4, 16)), phase("b", utc(2026, 4, 16)))
    charges = SubscriptionCharges(s, lookup)
    # February is the opening period: its own fee (10.00) and March in advance (10.00)
    assert amounts(invoice(charges, utc(2026, 2, 1))) == [("fixed", "a@1", "10.00"), ("fixed", "a@1", "10.00")]
    march = invoice(charges, utc(2026, 3, 5))
    assert amounts(march) == [("fixed", "a@1", "10.00")] and march[0].start == utc(2026, 4, 1)
    april = invoice(charges, utc(2026, 4, 30))
    # credit: 10.00 - round(10 x 15/30) = 5.00 back; B: 20.00 - round(20 x 15/30) = 10.00; May in advance: 20.00
    assert amounts(april) == [("fixed_credit", "a@1", "-5.00"), ("fixed", "b@1", "10.00"), ("fixed", "b@1", "20.00")]
    credit = april[0]
    assert (credit.quantity, credit.start, credit.end) == (-15, utc(2026, 4, 16), utc(2026, 5, 1))
    assert sum(line.amount for line in april) == D("25.00")


def test_advance_cancellation_credits_unused_days_and_stops() -> None:
    lookup = lookup_from([plan("a", "31")])
    s = sub(phase("a", utc(2026, 1, 1), utc(2026, 3, 10, 15)), status="canceled")
    charges = SubscriptionCharges(s, lookup)
    assert amounts(invoice(charges, utc(2026, 2, 1))) == [("fixed", "a@1", "31.00")]  # March in advance
    # March 1..10 used (the day of the cancellation counts): 10 days; 21 unused: 31 - round(31 x 10/31) = 21.00
    assert amounts(invoice(charges, utc(2026, 3, 1))) == [("fixed_credit", "a@1", "-21.00")]
    assert invoice(charges, utc(2026, 4, 1)) == []


def test_arrears_cancellation_charges_the_days_used() -> None:
    lookup = lookup_from([plan("a", "31", "arrears")])
    charges = SubscriptionCharges(sub(phase("a", utc(2026, 1, 1), utc(2026, 3, 10, 15))), lookup)
    march = invoice(charges, utc(2026, 3, 1))
    assert amounts(march) == [("fixed", "a@1", "10.00")]  # round(31 x 10 / 31) = 10.00
    assert (march[0].start, march[0].end) == (utc(2026, 3, 1), utc(2026, 3, 11))
    assert invoice(charges, utc(2026, 4, 1)) == []


def test_no_fee_during_the_trial() -> None:
    lookup = lookup_from([plan("a", "31")])
    s = sub(phase("a", utc(2026, 1, 1)), trial_end=utc(2026, 1, 10, 12))
    charges = SubscriptionCharges(s, lookup)
    assert invoice(charges, utc(2025, 12, 15)) == []
    january = invoice(charges, utc(2026, 1, 15))
    # trial January 1..9; the 10th (the trial ends that day) on: 22 days, 31 - round(31 x 9/31) = 22.00;
    # then February in advance, 31.00
    assert amounts(january) == [("fixed", "a@1", "22.00"), ("fixed", "a@1", "31.00")]
    assert january[0].start == utc(2026, 1, 10)


def test_one_time_charges_on_the_first_invoice_of_their_phase() -> None:
    setup = plan("a", None, one_time=[OneTimeCharge(code="setup", name="Setup", amount=D("49.999"))])
    pro = plan("b", None, one_time=[OneTimeCharge(code="onboard", name="Onboarding", amount=D(20))])
    s = sub(phase("a", utc(2026, 1, 15), utc(2026, 3, 3)), phase("b", utc(2026, 3, 3)))
    charges = SubscriptionCharges(s, lookup_from([setup, pro]))
    january = invoice(charges, utc(2026, 1, 20))
    assert amounts(january) == [("one_time", "a@1", "50.00")]  # 49.999 rounded once, half up
    assert (january[0].start, january[0].end) == (utc(2026, 1, 15), utc(2026, 2, 1))
    assert invoice(charges, utc(2026, 2, 20)) == []
    assert amounts(invoice(charges, utc(2026, 3, 20))) == [("one_time", "b@1", "20.00")]


def test_installments_add_up_and_fall_due_on_cancellation() -> None:
    device = plan("a", None, installments=[InstallmentCharge(code="device", name="Phone", total=D(100), count=3)])
    lookup = lookup_from([device])
    charges = SubscriptionCharges(sub(phase("a", utc(2026, 1, 20))), lookup)
    # 100.00 / 3 = 33.33 (rounded down to the cent) twice, the last takes the rest: 100.00 - 66.66 = 33.34
    paid = [amounts(invoice(charges, utc(2026, m, 25))) for m in (1, 2, 3, 4)]
    assert paid == [
        [("installment", "a@1", "33.33")],
        [("installment", "a@1", "33.33")],
        [("installment", "a@1", "33.34")],
        [],
    ]
    assert invoice(charges, utc(2026, 2, 1))[0].description == "Phone (A), payment 2 of 3"
    # canceled in February: payments 2 and 3 are due on February's invoice
    canceled = SubscriptionCharges(sub(phase("a", utc(2026, 1, 20), utc(2026, 2, 10))), lookup)
    assert amounts(invoice(canceled, utc(2026, 2, 1))) == [
        ("installment", "a@1", "33.33"),
        ("installment", "a@1", "33.34"),
    ]
    assert invoice(canceled, utc(2026, 3, 1)) == []


def test_minimum_commitment_true_up() -> None:
    committed = plan("a", "20", "arrears", minimum_commitment=D(100))
    lookup = lookup_from([committed])
    full = SubscriptionCharges(sub(phase("a", utc(2026, 1, 1))), lookup)
    # 100.00 - (usage 30.004 -> 30.00 + fee 20.00) = 50.00
    lines = invoice(full, utc(2026, 1, 5), D("30.004"))
    assert amounts(lines) == [("fixed", "a@1", "20.00"), ("minimum_true_up", "a@1", "50.00")]
    assert amounts(invoice(full, utc(2026, 1, 5), D(80))) == [("fixed", "a@1", "20.00")]  # 80 + 20 = 100: no true-up
    assert amounts(invoice(full, utc(2026, 1, 5))) == [("fixed", "a@1", "20.00")]  # no usage total: not computed
    # started January 16th: 16 of 31 days. Minimum: 100 - round(100 x 15/31 = 48.387...) = 51.61;
    # fee: 20 - round(20 x 15/31 = 9.677...) = 10.32; true-up: 51.61 - 30.00 - 10.32 = 11.29
    late = SubscriptionCharges(sub(phase("a", utc(2026, 1, 16))), lookup)
    assert amounts(invoice(late, utc(2026, 1, 20), D(30))) == [
        ("fixed", "a@1", "10.32"),
        ("minimum_true_up", "a@1", "11.29"),
    ]


def test_fixed_overrides_and_addons() -> None:
    support_v1 = plan("support", "5", addon=True, published_at=utc(2025, 1, 1))
    support_v2 = plan("support", "7", version=2, addon=True, published_at=utc(2026, 6, 1))
    lookup = lookup_from([plan("a", "10"), support_v1, support_v2])
    s = sub(phase("a", utc(2026, 1, 1), fixed_overrides={"base": D("12.5")}, addons=["support"]))
    january = invoice(SubscriptionCharges(s, lookup), utc(2026, 1, 1))
    # the customer's 12.50 instead of 10.00; the add-on's version in force on January 1st (v1, 5.00 and
    # not v2's 7.00, published in June); each for January and for February in advance
    assert amounts(january) == [
        ("fixed", "a@1", "12.50"),
        ("fixed", "support@1", "5.00"),
        ("fixed", "a@1", "12.50"),
        ("fixed", "support@1", "5.00"),
    ]
    assert january[0].unit_price == D("12.5")


@pytest.mark.parametrize(
    ("doc", "plans", "message"),
    [
        (
            sub(phase("a", utc(2026, 1, 1), fixed_overrides={"nope": D(1)})),
            [plan("a", "10")],
            r"phases\[0\]\.fixed_overrides\.nope: plan a@1 has no fixed charge 'nope'",
        ),
        (
            sub(phase("a", utc(2026, 1, 1), fixed_overrides={"base": D(-1)})),
            [plan("a", "10")],
            r"phases\[0\]\.fixed_overrides\.base: must not be negative",
        ),
        (
            sub(phase("a", utc(2026, 1, 1), utc(2026, 2, 1)), phase("b", utc(2026, 1, 20))),
            [plan("a", "10"), plan("b", "10")],
            r"phases\[1\]\.start: phases must be ordered and must not overlap",
        ),
        (sub(phase("a", utc(2026, 1, 1))), [plan("b", "10")], r"phases\[0\]\.plan_code: plan a@1 not found"),
        (
            sub(phase("a", utc(2026, 1, 1), utc(2026, 2, 1)), phase("b", utc(2026, 2, 1))),
            [plan("a", "10"), plan("b", "10", currency="EUR")],
            r"phases\[1\]\.plan_code: plan b@1 is in EUR, the subscription in USD",
        ),
        (
            sub(phase("a", utc(2026, 1, 1), addons=["a"])),
            [plan("a", "10")],
            r"phases\[0\]\.addons\[0\]: plan a@1 is not an add-on",
        ),
        (
            sub(phase("a", utc(2026, 1, 1))),
            [plan("a", "10", addon=True)],
            r"phases\[0\]\.plan_code: a@1 is an add-on, not a main plan",
        ),
        (sub(phase("a", datetime(2026, 1, 1))), [plan("a", "10")], r"phases\[0\]\.start: naive datetime"),
        (
            sub(phase("a", utc(2026, 1, 1))),
            [plan("a", None, fixed=[FixedCharge(code="y", name="Y", amount=D(1), interval="yearly")])],
            r"phases\[0\]: plan a@1 fixed\[0\]\.interval is yearly, the billing period monthly",
        ),
        (sub(), [], r"phases: a subscription needs at least one phase"),
    ],
)
def test_bad_subscriptions_name_the_field(doc: SubscriptionDoc, plans: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SubscriptionCharges(doc, lookup_from(plans))


@settings(max_examples=60, deadline=None)
@given(
    fee=st.decimals(min_value=0, max_value=D(100000), places=2, allow_nan=False, allow_infinity=False),
    cuts=st.sets(st.integers(min_value=1, max_value=30), max_size=6),
    hours=st.integers(min_value=0, max_value=23),
    timing=st.sampled_from(["advance", "arrears"]),
    tz=st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]),
)
def test_property_same_price_phases_bill_the_full_fee(
    fee: Decimal, cuts: set[int], hours: int, timing: str, tz: str
) -> None:
    """March 2026 (31 days) split at any days into versions of a plan with the same price: arrears lines
    add up to the fee; in advance the fee billed on February's invoice stands (March's corrections add up
    to zero)."""
    versions = [plan("a", str(fee), timing, version=v) for v in range(1, len(cuts) + 2)]
    bounds = [datetime(2026, 3, 1 + c, hours, tzinfo=UTC) for c in sorted(cuts)]
    starts = [utc(2026, 1, 1), *bounds]
    ends = [*bounds, None]
    s = sub(*(phase("a", st_, en, version=v + 1) for v, (st_, en) in enumerate(zip(starts, ends, strict=True))))
    charges = SubscriptionCharges(s, lookup_from(versions), tz)
    march = charges.period_containing(utc(2026, 3, 15))
    previous = charges.lines(charges.schedule.period(march.index - 1))
    current = charges.lines(march)
    covering = [line for line in [*previous, *current] if march.start <= line.start < march.end]
    assert sum((line.amount for line in covering), D(0)) == fee
    if timing == "advance":
        corrections = [line for line in current if line.start < march.end]
        assert sum((line.amount for line in corrections), D(0)) == 0


def test_a_gap_between_phases_and_an_empty_phase() -> None:
    lookup = lookup_from([plan("a", "28")])
    s = sub(
        phase("a", utc(2026, 1, 1), utc(2026, 2, 10, 8)),
        phase("a", utc(2026, 3, 15), utc(2026, 3, 15)),
        phase("a", utc(2026, 3, 15)),
    )
    charges = SubscriptionCharges(s, lookup)
    # February: billed 28.00 in advance; used Feb 1..10 (10 of 28 days): 28 - round(28 x 10/28) = 18.00 back;
    # nothing in advance for March (no phase on March 1st)
    assert amounts(invoice(charges, utc(2026, 2, 1))) == [("fixed_credit", "a@1", "-18.00")]
    # March: not billed in advance, so its days are charged now: March 15..31, 17 of 31 days:
    # 28 - round(28 x 14/31 = 12.645...) = 28 - 12.65 = 15.35; then April in advance, 28.00
    assert amounts(invoice(charges, utc(2026, 3, 1))) == [("fixed", "a@1", "15.35"), ("fixed", "a@1", "28.00")]


def test_canceled_before_it_started_bills_nothing() -> None:
    # the store ends the only phase at its start: [start, start) covers no instant
    setup = plan("a", "10", one_time=[OneTimeCharge(code="setup", name="Setup", amount=D(5))])
    charges = SubscriptionCharges(sub(phase("a", utc(2026, 2, 1), utc(2026, 2, 1))), lookup_from([setup]))
    assert [charges.lines(p, D(0)) for p in charges.periods_between(utc(2026, 1, 1), utc(2026, 4, 1))] == [[], [], []]


def test_lookup_picks_the_version_in_force() -> None:
    v1 = plan("s", "5", addon=True, published_at=utc(2026, 3, 1))
    v2 = plan("s", "7", version=2, addon=True, published_at=utc(2026, 6, 1))
    lookup = lookup_from([v2, v1])
    assert lookup("s", None, utc(2026, 5, 31)) is v1 and lookup("s", None, utc(2026, 6, 1)) is v2
    assert lookup("s", 2, utc(2020, 1, 1)) is v2  # an explicit version is that version
    assert lookup("s", None, utc(2026, 1, 1)) is v1  # before any was published: the first version
    with pytest.raises(KeyError, match="plan s@3 not found"):
        lookup("s", 3, utc(2026, 1, 1))
    with pytest.raises(KeyError, match="plan x not found"):
        lookup("x", None, utc(2026, 1, 1))


def test_anniversary_month_end_and_dst_in_the_customer_zone() -> None:
    # Started January 31st (Paris), anniversary billing: periods Jan 31 - Feb 27 (28 days), Feb 28 - Mar 30
    # (1 + 30 = 31 days: March returns to the 31st). Canceled March 29th at 12:00 Paris time, the day the
    # clocks move to UTC+2: charged Feb 28 .. Mar 29 = 30 of 31 days: round(28 x 30 / 31 = 27.096...) = 27.10
    lookup = lookup_from([plan("a", "28", "arrears")])
    s = sub(phase("a", utc(2026, 1, 30, 23), utc(2026, 3, 29, 10)), billing_anchor="anniversary")
    charges = SubscriptionCharges(s, lookup, "Europe/Paris")
    first, second = charges.periods_between(utc(2026, 1, 30, 23), utc(2026, 3, 29, 10))
    assert (first.days, second.days) == (28, 31)
    assert amounts(charges.lines(first)) == [("fixed", "a@1", "28.00")]
    (line,) = charges.lines(second)
    assert (line.amount, line.quantity, line.period_days) == (D("27.10"), 30, 31)
    # Feb 28 00:00 in Paris is 23:00Z on the 27th (UTC+1); Mar 30 00:00 is 22:00Z on the 29th (UTC+2)
    assert (line.start, line.end) == (utc(2026, 2, 27, 23), utc(2026, 3, 29, 22))


@settings(max_examples=60, deadline=None)
@given(
    fees=st.lists(
        st.decimals(min_value=0, max_value=D(10000), places=2, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=6,
    ),
    cuts=st.sets(st.integers(min_value=1, max_value=30), min_size=5, max_size=5),
    hours=st.integers(min_value=0, max_value=23),
)
def test_property_advance_billing_nets_to_what_is_due(fees: list[Decimal], cuts: set[int], hours: int) -> None:
    """Phases at different prices split March 2026 (UTC) at any days: what February's invoice billed in
    advance for March plus March's corrections is exactly the sum of each phase's days, prorated."""
    offsets = sorted(cuts)[: len(fees) - 1]
    versions = [plan("a", str(fee), "advance", version=v + 1) for v, fee in enumerate(fees)]
    bounds = [datetime(2026, 3, 1 + c, hours, tzinfo=UTC) for c in offsets]
    starts, ends = [utc(2026, 1, 1), *bounds], [*bounds, None]
    s = sub(*(phase("a", a, b, version=v + 1) for v, (a, b) in enumerate(zip(starts, ends, strict=True))))
    charges = SubscriptionCharges(s, lookup_from(versions))
    march = charges.period_containing(utc(2026, 3, 15))
    billed = [*charges.lines(charges.schedule.period(march.index - 1)), *charges.lines(march)]
    covering = [line for line in billed if march.start <= line.start < march.end]
    # phase i is charged March days [c_i, c_i+1) (the day of each change goes to the new phase)
    days = [0, *offsets, 31]
    expected = sum((prorated(fee, a, b, 31, "USD") for fee, a, b in zip(fees, days, days[1:], strict=False)), D(0))
    assert sum((line.amount for line in covering), D(0)) == expected
