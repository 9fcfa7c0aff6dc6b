"""The non-usage lines of one subscription's invoice for one billing period (docs/billing.md). Pure.

`SubscriptionCharges(sub, lookup, timezone).lines(period, usage_total)` returns what the invoice that
closes `period` carries for the subscription, apart from usage charges:

- recurring fees in arrears: the days of `period` each phase was active (prorated, day-based);
- recurring fees in advance: the next period in full, for the phase that will be in effect on its first
  day; and for `period` itself the corrections to what was billed for it in advance: a credit for the
  unused days of that phase (cancellation, upgrade, downgrade) and the days of the phases that followed
  it. A period in which the subscription becomes billable (its start, or the end of its trial) was not
  billed in advance: its invoice charges its days directly (the opening);
- one-time charges on the invoice of the period in which their phase starts;
- installments: payment k on the invoice of the k-th period of the phase; if the phase ends first, the
  payments left are all due on the invoice of the period in which it ends; they add up to the total;
- the minimum-commitment true-up, given the period's usage total.

Everything is decided from the subscription document alone (not from when a change was made), so two
closes of one period give the same lines. No fixed fee is charged for the days of a trial (the day it
ends is charged, like the day of any change). Periods: the first phase's plan interval, the subscription's
anchor (anniversary: the local day of the first phase's start), the customer's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from meterstream.billing.lines import ChargeLine
from meterstream.billing.periods import Period, Schedule, aware
from meterstream.billing.plans import PlanLookup
from meterstream.billing.proration import DaySpan, day_spans, prorated
from meterstream.rating.fees import installment_amounts
from meterstream.rating.money import EXACT, ZERO, round_money, to_decimal
from meterstream.schemas.entities import FixedCharge, Phase, PlanVersionDoc, SubscriptionDoc

__all__ = ["SubscriptionCharges"]

_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class _Fee:
    """A recurring fee of one phase, with this customer's amount."""

    plan: PlanVersionDoc
    charge: FixedCharge
    amount: Decimal


@dataclass(frozen=True, slots=True)
class _Phase:
    index: int
    phase: Phase
    plan: PlanVersionDoc
    addons: tuple[PlanVersionDoc, ...]
    span: DaySpan  # local days charged to the phase, trial days removed
    fees: tuple[_Fee, ...]

    @property
    def plans(self) -> tuple[PlanVersionDoc, ...]:
        return (self.plan, *self.addons)


class SubscriptionCharges:
    """The fixed, one-time, installment and minimum lines of one subscription, period by period."""

    def __init__(self, sub: SubscriptionDoc, lookup: PlanLookup, timezone: str = "UTC") -> None:
        if not sub.phases:
            raise ValueError("phases: a subscription needs at least one phase")
        self.sub = sub
        for i, phase in enumerate(sub.phases):
            aware(phase.start, f"phases[{i}].start")
            if phase.end is not None:
                aware(phase.end, f"phases[{i}].end")
            previous_end = sub.phases[i - 1].end if i else None
            if i and (previous_end is None or phase.start < previous_end):
                raise ValueError(f"phases[{i}].start: phases must be ordered and must not overlap")
        # empty phases ([start, start): canceled before it started) cover no instant and bill nothing
        kept = [(i, p) for i, p in enumerate(sub.phases) if p.end is None or p.end > p.start]
        resolved = [(i, p, self._plan(i, p, lookup)) for i, p in kept]
        phases = [p for _, p in kept] or [sub.phases[0]]
        first_plan = resolved[0][2][0] if resolved else self._plan(0, sub.phases[0], lookup)[0]
        self.currency = first_plan.currency
        self.interval = first_plan.interval
        for i, _, (plan, addons) in resolved:
            for name, doc in ((f"phases[{i}].plan_code", plan), *((f"phases[{i}].addons", a) for a in addons)):
                if doc.currency != self.currency:
                    raise ValueError(
                        f"{name}: plan {doc.rating_id} is in {doc.currency}, the subscription in {self.currency}"
                    )
            if plan.interval != self.interval:
                raise ValueError(
                    f"phases[{i}].plan_code: plan {plan.rating_id} bills {plan.interval}, the "
                    f"subscription {self.interval} (changing the interval is not supported)"
                )
        self.schedule = Schedule.starting(phases[0].start, self.interval, sub.billing_anchor, timezone)
        trial_day = None if sub.trial_end is None else self.schedule.local_day(aware(sub.trial_end, "trial_end"))
        spans = day_spans([(p.start, p.end) for _, p in kept], self.schedule)
        self.phases: list[_Phase] = []
        for (i, phase, (plan, addons)), span in zip(resolved, spans, strict=True):
            if trial_day is not None and trial_day > span.first:
                span = DaySpan(trial_day, span.end if span.end is None or span.end > trial_day else trial_day)
            self.phases.append(_Phase(i, phase, plan, addons, span, self._fees(i, phase, plan, addons)))
        # first local day a fixed fee is charged for: before it, nothing was billed in advance
        charged = [p.span.first for p in self.phases if p.span.end is None or p.span.end > p.span.first]
        self.first_billable_day: date | None = min(charged, default=None)

    # -- public ---------------------------------------------------------------------------------------

    def lines(self, period: Period, usage_total: Decimal | None = None) -> list[ChargeLine]:
        """Every non-usage line of the invoice closing `period` (the true-up only with a usage total)."""
        lines = [*self.fixed_lines(period), *self.one_time_lines(period), *self.installment_lines(period)]
        if usage_total is not None:
            lines.extend(self.minimum_true_up(period, usage_total))
        return lines

    def period_containing(self, at: datetime) -> Period:
        """The subscription's billing period containing `at` (pass only this schedule's periods to `lines`)."""
        return self.schedule.period_containing(at)

    def periods_between(self, a: datetime, b: datetime) -> list[Period]:
        """The subscription's billing periods overlapping [a, b)."""
        return self.schedule.periods_between(a, b)

    def fixed_lines(self, period: Period) -> list[ChargeLine]:
        """Recurring fees: arrears for `period`, advance corrections for `period`, advance for the next."""
        lines = []
        for phase in self.phases:
            for fee in phase.fees:
                if fee.charge.timing == "arrears":
                    lines.extend(self._due_lines(phase, fee, period))
        lines.extend(self._advance_corrections(period))
        following = self.schedule.period(period.index + 1)
        first = self._first_day_phase(following)
        if first is not None and self._billed_in_advance(following):
            for fee in first.fees:
                if fee.charge.timing == "advance":
                    lines.extend(self._piece_lines(first, fee, following, following.first_day, following.end_day))
        return lines

    def one_time_lines(self, period: Period) -> list[ChargeLine]:
        """One-time charges of the phases that start in `period`."""
        lines = []
        for phase in self.phases:
            if not period.contains(phase.phase.start):
                continue
            start, end = self._covered(phase, period)
            for plan in phase.plans:
                for charge in plan.one_time:
                    amount = round_money(charge.amount, self.currency)
                    lines.append(
                        ChargeLine(
                            "one_time",
                            charge.code,
                            f"{charge.name} ({plan.name})",
                            plan.rating_id,
                            Decimal(1),
                            amount,
                            amount,
                            start,
                            end,
                            self.currency,
                        )
                    )
        return lines

    def installment_lines(self, period: Period) -> list[ChargeLine]:
        """The installment payments due on the invoice closing `period`."""
        lines = []
        for phase in self.phases:
            first = self.schedule.period_containing(phase.phase.start).index
            last = None if phase.phase.end is None else self.schedule.period_containing(phase.phase.end - _TICK).index
            if period.index < first or (last is not None and period.index > last):
                continue
            start, end = self._covered(phase, period)
            k = period.index - first
            for plan in phase.plans:
                for charge in plan.installments:
                    schedule = installment_amounts(charge.total, charge.count, self.currency)
                    due = range(k, charge.count) if period.index == last else range(k, min(k + 1, charge.count))
                    for n in due:
                        lines.append(
                            ChargeLine(
                                "installment",
                                charge.code,
                                f"{charge.name} ({plan.name}), payment {n + 1} of {charge.count}",
                                plan.rating_id,
                                Decimal(1),
                                schedule[n],
                                schedule[n],
                                start,
                                end,
                                self.currency,
                            )
                        )
        return lines

    def minimum_true_up(self, period: Period, usage_total: Decimal) -> list[ChargeLine]:
        """The true-up to the minimum commitment: the minimum, prorated over the days each phase was charged
        in `period`, minus the usage total (rounded) and the recurring fees due for `period` (whichever
        invoice carries them); nothing when that is not positive."""
        minimum = ZERO
        fees = ZERO
        last_plan = None
        for phase in self.phases:
            clipped = phase.span.clip(period.first_day, period.end_day)
            if clipped is None:
                continue
            a, b = (clipped[0] - period.first_day).days, (clipped[1] - period.first_day).days
            for plan in phase.plans:
                if plan.minimum_commitment is not None:
                    minimum = EXACT.add(minimum, prorated(plan.minimum_commitment, a, b, period.days, self.currency))
                    last_plan = plan
            for fee in phase.fees:
                fees = EXACT.add(fees, self._piece(fee, a, b, period.days))
        if last_plan is None:
            return []
        spent = EXACT.add(round_money(to_decimal(usage_total), self.currency), fees)
        true_up = EXACT.subtract(minimum, spent)
        if true_up <= 0:
            return []
        return [
            ChargeLine(
                "minimum_true_up",
                "minimum_commitment",
                f"Minimum commitment true-up ({minimum} {self.currency} minimum, {spent} {self.currency} spent)",
                last_plan.rating_id,
                Decimal(1),
                true_up,
                true_up,
                period.start,
                period.end,
                self.currency,
                "arrears",
            )
        ]

    # -- recurring fees -------------------------------------------------------------------------------

    def _billed_in_advance(self, period: Period) -> bool:
        """Was `period` billed in advance (on the previous period's invoice)? Only when a fee was already
        being charged before it started; the opening period is billed on its own invoice."""
        return self.first_billable_day is not None and self.first_billable_day < period.first_day

    def _first_day_phase(self, period: Period) -> _Phase | None:
        """The phase charged the first day of `period`: the one whose advance fees were billed for it."""
        for phase in self.phases:
            if phase.span.clip(period.first_day, period.first_day + timedelta(days=1)) is not None:
                return phase
        return None

    def _advance_corrections(self, period: Period) -> list[ChargeLine]:
        first = self._first_day_phase(period) if self._billed_in_advance(period) else None
        lines = []
        for phase in self.phases:
            for fee in phase.fees:
                if fee.charge.timing != "advance":
                    continue
                if phase is not first:  # not billed before: its days are charged now
                    lines.extend(self._due_lines(phase, fee, period))
                    continue
                clipped = phase.span.clip(period.first_day, period.end_day)
                used_end = period.first_day if clipped is None else clipped[1]
                b = (used_end - period.first_day).days
                billed = self._piece(fee, 0, period.days, period.days)
                credit = EXACT.subtract(billed, self._piece(fee, 0, b, period.days))
                if credit:
                    lines.append(
                        ChargeLine(
                            "fixed_credit",
                            fee.charge.code,
                            f"Unused time on {fee.charge.name} ({fee.plan.name}), "
                            f"{_days_text(used_end, period.end_day)}",
                            fee.plan.rating_id,
                            Decimal(b - period.days),
                            fee.amount,
                            EXACT.minus(credit),
                            self.schedule.day_start(used_end),
                            period.end,
                            self.currency,
                            "advance",
                            period.days,
                        )
                    )
        return lines

    def _due_lines(self, phase: _Phase, fee: _Fee, period: Period) -> list[ChargeLine]:
        clipped = phase.span.clip(period.first_day, period.end_day)
        return [] if clipped is None else self._piece_lines(phase, fee, period, *clipped)

    def _piece_lines(self, phase: _Phase, fee: _Fee, period: Period, lo: date, hi: date) -> list[ChargeLine]:
        a, b = (lo - period.first_day).days, (hi - period.first_day).days
        amount = self._piece(fee, a, b, period.days)
        return [
            ChargeLine(
                "fixed",
                fee.charge.code,
                f"{fee.charge.name} ({fee.plan.name}), {_days_text(lo, hi)}",
                fee.plan.rating_id,
                Decimal(b - a),
                fee.amount,
                amount,
                self.schedule.day_start(lo),
                self.schedule.day_start(hi),
                self.currency,
                fee.charge.timing,
                period.days,
            )
        ]

    def _piece(self, fee: _Fee, a: int, b: int, days: int) -> Decimal:
        if fee.charge.prorate:
            return prorated(fee.amount, a, b, days, self.currency)
        return round_money(fee.amount, self.currency) if b > a else ZERO

    # -- resolution -----------------------------------------------------------------------------------

    def _covered(self, phase: _Phase, period: Period) -> tuple[datetime, datetime]:
        start = max(period.start, phase.phase.start)
        end = period.end if phase.phase.end is None else min(period.end, phase.phase.end)
        return start, max(start, end)

    @staticmethod
    def _plan(i: int, phase: Phase, lookup: PlanLookup) -> tuple[PlanVersionDoc, tuple[PlanVersionDoc, ...]]:
        try:
            plan = lookup(phase.plan_code, phase.plan_version, phase.start)
        except KeyError as exc:
            raise ValueError(f"phases[{i}].plan_code: {exc.args[0]}") from None
        if plan.addon:
            raise ValueError(f"phases[{i}].plan_code: {plan.rating_id} is an add-on, not a main plan")
        addons = []
        for j, code in enumerate(phase.addons):
            try:
                addon = lookup(code, None, phase.start)
            except KeyError as exc:
                raise ValueError(f"phases[{i}].addons[{j}]: {exc.args[0]}") from None
            if not addon.addon:
                raise ValueError(f"phases[{i}].addons[{j}]: plan {addon.rating_id} is not an add-on")
            addons.append(addon)
        return plan, tuple(addons)

    @staticmethod
    def _fees(i: int, phase: Phase, plan: PlanVersionDoc, addons: tuple[PlanVersionDoc, ...]) -> tuple[_Fee, ...]:
        codes = {c.code for c in plan.fixed}
        fees = []
        for doc in (plan, *addons):
            overrides = phase.fixed_overrides if doc is plan else {}
            for j, charge in enumerate(doc.fixed):
                if charge.interval != plan.interval:
                    raise ValueError(
                        f"phases[{i}]: plan {doc.rating_id} fixed[{j}].interval is {charge.interval}, "
                        f"the billing period {plan.interval} (a fee bills once per billing period)"
                    )
                amount = to_decimal(overrides.get(charge.code, charge.amount))
                fees.append(_Fee(doc, charge, amount))
        for code, amount in phase.fixed_overrides.items():
            if code not in codes:
                raise ValueError(
                    f"phases[{i}].fixed_overrides.{code}: plan {plan.rating_id} has no fixed charge {code!r}"
                )
            if to_decimal(amount) < 0:
                raise ValueError(f"phases[{i}].fixed_overrides.{code}: must not be negative")
        return tuple(fees)


def _days_text(lo: date, hi: date) -> str:
    last = hi - timedelta(days=1)
    return lo.isoformat() if last == lo else f"{lo.isoformat()} to {last.isoformat()}"
