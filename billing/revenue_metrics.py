"""Recurring revenue from subscriptions: MRR, ARR, churn and net revenue retention. Pure.

MRR at an instant is the sum, over the subscriptions in effect then, of their recurring fees (the plan
version's `fixed` charges, a phase's `fixed_overrides` replacing an amount, and the phase's add-ons' fees)
normalized to a month: monthly x 1, quarterly / 3, yearly / 12, weekly x 52 / 12. Usage charges, one-time
charges, installments and minimum commitments are not recurring revenue and do not count; a subscription
still in its trial (`trial_end` later) counts 0; a deleted one nothing. Amounts are Decimals per currency,
exact to 60 significant digits (`rating.money.ROUNDING`: yearly / 12 repeats);
`round_money` rounds a reported figure once.
ARR = MRR x 12.

For a month, each customer's MRR at its first instant (`start`) and at the first instant of the next month
(`end`) gives the movements (per currency): `new` (start 0, end > 0), `churned` (start > 0, end 0),
`expansion` and `contraction` (both > 0), so that end = start + new + expansion - contraction - churned;
the customer churn rate = churned customers / customers with MRR at the start; the net revenue retention =
the end MRR of the customers that had MRR at the start / the start MRR (None without any).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from meterstream.rating.money import ROUNDING
from meterstream.schemas.entities import PlanVersionDoc, SubscriptionDoc

ZERO = Decimal(0)
_PER_MONTH = {"monthly": (Decimal(1), Decimal(1)), "quarterly": (Decimal(1), Decimal(3)),
              "yearly": (Decimal(1), Decimal(12)), "weekly": (Decimal(52), Decimal(12))}  # fmt: skip
# (plan code, version or None for the newest at `at`, at) -> the plan version
PlanLookup = Callable[[str, int | None, datetime], PlanVersionDoc]


def monthly(amount: Decimal, interval: str) -> Decimal:
    """`amount` per `interval` as an amount per month (exact)."""
    times, per = _PER_MONTH[interval]
    return ROUNDING.divide(ROUNDING.multiply(amount, times), per)  # 100 / 12 repeats: kept to PRECISION digits


def _fees(plan: PlanVersionDoc, overrides: dict[str, Decimal]) -> Decimal:
    total = ZERO
    for charge in plan.fixed:
        total = ROUNDING.add(total, monthly(Decimal(overrides.get(charge.code, charge.amount)), charge.interval))
    return total


def subscription_mrr(sub: SubscriptionDoc, at: datetime, plan: PlanLookup) -> tuple[str, Decimal] | None:
    """(currency, MRR) of one subscription at `at`; None when no phase is in effect (or it is deleted)."""
    if sub.deleted:
        return None
    phase = sub.phase_at(at)
    if phase is None:
        return None
    main = plan(phase.plan_code, phase.plan_version, at)
    if sub.trial_end is not None and at < sub.trial_end:
        return main.currency, ZERO
    total = _fees(main, phase.fixed_overrides)
    for code in phase.addons:
        addon = plan(code, None, phase.start)
        if addon.currency != main.currency:
            raise ValueError(f"addons: {code} is in {addon.currency}, the plan in {main.currency}")
        total = ROUNDING.add(total, _fees(addon, {}))
    return main.currency, total


def mrr_by_customer(subs: Iterable[SubscriptionDoc], at: datetime, plan: PlanLookup) -> dict[tuple[str, str], Decimal]:
    """{(customer, currency): MRR} at `at`, over the customers' subscriptions in effect."""
    out: dict[tuple[str, str], Decimal] = {}
    for sub in subs:
        got = subscription_mrr(sub, at, plan)
        if got is not None:
            key = (sub.customer, got[0])
            out[key] = ROUNDING.add(out.get(key, ZERO), got[1])
    return out


@dataclass
class Movements:
    """One currency's recurring revenue over a month (see the module doc)."""

    currency: str
    start_mrr: Decimal = ZERO
    end_mrr: Decimal = ZERO
    new: Decimal = ZERO
    expansion: Decimal = ZERO
    contraction: Decimal = ZERO
    churned: Decimal = ZERO
    customers_start: int = 0
    customers_end: int = 0
    customers_churned: int = 0
    retained_end_mrr: Decimal = ZERO  # end MRR of the customers that had MRR at the start
    churned_customers: list[str] = field(default_factory=list)

    @property
    def arr(self) -> Decimal:
        return ROUNDING.multiply(self.end_mrr, Decimal(12))

    @property
    def customer_churn_rate(self) -> Decimal | None:
        if not self.customers_start:
            return None
        return ROUNDING.divide(Decimal(self.customers_churned), Decimal(self.customers_start))

    @property
    def net_revenue_retention(self) -> Decimal | None:
        return ROUNDING.divide(self.retained_end_mrr, self.start_mrr) if self.start_mrr else None


def movements(start: dict[tuple[str, str], Decimal], end: dict[tuple[str, str], Decimal]) -> dict[str, Movements]:
    """The month's movements per currency from the customers' MRR at its start and at its end."""
    out: dict[str, Movements] = {}
    for customer, currency in sorted(set(start) | set(end)):
        m = out.setdefault(currency, Movements(currency))
        before, after = start.get((customer, currency), ZERO), end.get((customer, currency), ZERO)
        m.start_mrr, m.end_mrr = ROUNDING.add(m.start_mrr, before), ROUNDING.add(m.end_mrr, after)
        m.customers_start += before > 0
        m.customers_end += after > 0
        if before > 0:
            m.retained_end_mrr = ROUNDING.add(m.retained_end_mrr, after)
        if before == 0 and after > 0:
            m.new = ROUNDING.add(m.new, after)
        elif before > 0 and after == 0:
            m.churned = ROUNDING.add(m.churned, before)
            m.customers_churned += 1
            m.churned_customers.append(customer)
        elif after > before:
            m.expansion = ROUNDING.add(m.expansion, ROUNDING.subtract(after, before))
        elif after < before:
            m.contraction = ROUNDING.add(m.contraction, ROUNDING.subtract(before, after))
    return out
