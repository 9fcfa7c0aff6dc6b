"""Collections (dunning): which steps an overdue invoice is due for on a given day. Pure: no I/O, no clock
(docs/dunning.md; the billing run applies the steps once each: entities/dunning.py, invoice_emitter/dunning_run.py).

A `Policy` (per tenant, overridden per customer) has
- `reminder_days`: day offsets after the due date, strictly increasing, each >= 1 (e.g. 3, 7, 14): reminder k is
  due on `due_date + reminder_days[k-1]`;
- `late_fee` (optional): `fixed` (an amount in the invoice's currency) or `percent` (of the amount still due
  when the fee is charged, 2 = 2 %), charged first `after_days` after the due date and then every
  `period_days` (None: once), at most `max_periods` times (None: 24, `MAX_STEPS`) while the invoice stays unpaid;
- `suspend_after_last`: a provisioning `suspend` (reason `invoice_overdue`) the day after the last reminder
  (the last reminder gives one day's notice); without reminders, the day after the due date.

Each step has a name unique within its invoice (`reminder:2`, `late_fee:1`, `suspend`, `reactivate`): the log
keyed by (invoice, step) is what makes a re-run skip what was done. A run that comes late (the scheduler was off
for a week) does every step whose day has come, each with its own day (`Step.due_on`); a late fee is computed
on what is due on the day of the run.

Rounding of a late fee: a percentage fee is amount due x percent / 100, rounded once to the currency's minor
unit, half away from zero (`rating.money.round_money`), computed in the ROUNDING context; a fixed fee must
already have the currency's digits (more is refused, never rounded). A fee of 0 (amount due 0, or a
percentage that rounds to 0) is no step at all.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Literal

from meterstream.rating.money import ROUNDING, minor_units, round_money, to_decimal

__all__ = [
    "LATE_FEE_KINDS",
    "MAX_DAYS",
    "MAX_STEPS",
    "LateFee",
    "OverdueInvoice",
    "Policy",
    "PolicyError",
    "Step",
    "late_fee_amount",
    "reactivation_due",
    "steps_due",
]

LateFeeKind = Literal["fixed", "percent"]
LATE_FEE_KINDS = ("fixed", "percent")
MAX_DAYS = 3650  # offsets and periods up to ten years
MAX_STEPS = 24  # reminders per policy, late fees per invoice
StepKind = Literal["reminder", "late_fee", "suspend", "reactivate"]


class PolicyError(ValueError):
    """A policy that cannot be applied; `field` names the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class LateFee:
    kind: LateFeeKind
    value: Decimal  # fixed: an amount in the invoice currency; percent: 2 = 2 % of the amount due
    after_days: int = 30  # the first fee, days after the due date
    period_days: int | None = 30  # then one more every period_days (None: once)
    max_periods: int | None = None  # at most this many fees per invoice (None: MAX_STEPS)

    def __post_init__(self) -> None:
        if self.kind not in LATE_FEE_KINDS:
            raise PolicyError("late_fee.kind", f"one of {', '.join(LATE_FEE_KINDS)} (got {self.kind!r})")
        try:
            value = to_decimal(self.value)
        except (TypeError, ValueError) as exc:
            raise PolicyError("late_fee.value", str(exc)) from None
        if value <= 0:
            raise PolicyError("late_fee.value", f"must be positive (got {self.value})")
        if self.kind == "percent" and value > 100:
            raise PolicyError("late_fee.value", f"a percentage from 0 to 100 (got {self.value})")
        object.__setattr__(self, "value", value)
        _days("late_fee.after_days", self.after_days, minimum=0)
        if self.period_days is not None:
            _days("late_fee.period_days", self.period_days, minimum=1)
        if self.max_periods is not None and not (
            isinstance(self.max_periods, int) and 1 <= self.max_periods <= MAX_STEPS
        ):
            raise PolicyError("late_fee.max_periods", f"from 1 to {MAX_STEPS} (got {self.max_periods!r})")


@dataclass(frozen=True)
class Policy:
    reminder_days: tuple[int, ...] = (3, 7, 14)
    late_fee: LateFee | None = None
    suspend_after_last: bool = False

    def __post_init__(self) -> None:
        days = tuple(self.reminder_days)
        if len(days) > MAX_STEPS:
            raise PolicyError("reminder_days", f"at most {MAX_STEPS} reminders (got {len(days)})")
        for i, d in enumerate(days):
            _days(f"reminder_days[{i}]", d, minimum=1)
        if any(b <= a for a, b in pairwise(days)):
            raise PolicyError("reminder_days", f"must be strictly increasing (got {list(days)})")
        object.__setattr__(self, "reminder_days", days)


def _days(field: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= MAX_DAYS:
        raise PolicyError(field, f"a whole number of days from {minimum} to {MAX_DAYS} (got {value!r})")


@dataclass(frozen=True)
class OverdueInvoice:
    """What the rules look at: the due date and what is still due (in `currency`)."""

    invoice_id: str
    currency: str
    due_date: date
    amount_due: Decimal


@dataclass(frozen=True)
class Step:
    name: str  # unique within the invoice: reminder:1, late_fee:1, suspend, reactivate
    kind: StepKind
    due_on: date
    number: int = 0  # reminder k / late fee k (1-based); 0 for suspend and reactivate
    amount: Decimal | None = None  # a late fee's amount
    last: bool = False  # the last reminder of the policy


def late_fee_amount(fee: LateFee, amount_due: Decimal, currency: str) -> Decimal:
    """The fee on `amount_due` (module docstring: rounding). A fixed fee with more digits than `currency` has:
    PolicyError naming `late_fee.value`."""
    if fee.kind == "fixed":
        rounded = round_money(fee.value, currency)
        if rounded != fee.value:
            raise PolicyError("late_fee.value", f"{fee.value} has more decimals than {currency} "
                                                f"({minor_units(currency)})")  # fmt: skip
        return rounded
    return round_money(ROUNDING.divide(ROUNDING.multiply(amount_due, fee.value), Decimal(100)), currency)


def steps_due(invoice: OverdueInvoice, policy: Policy, today: date, done: Collection[str] = ()) -> list[Step]:
    """The steps of `invoice` whose day has come by `today` and that are not in `done`, in the order of their
    days (a reminder before the late fee of the same day, the suspension last). An invoice with nothing due
    has no steps (its reactivation: `reactivation_due`)."""
    if invoice.amount_due <= 0:
        return []
    steps: list[Step] = []
    last = len(policy.reminder_days)
    for k, offset in enumerate(policy.reminder_days, start=1):
        steps.append(Step(f"reminder:{k}", "reminder", invoice.due_date + timedelta(days=offset), k, last=k == last))
    fee = policy.late_fee
    if fee is not None:
        count = 1 if fee.period_days is None else (fee.max_periods or MAX_STEPS)
        for k in range(1, count + 1):
            day = invoice.due_date + timedelta(days=fee.after_days + (k - 1) * (fee.period_days or 0))
            if day > today:
                break
            name = f"late_fee:{k}"
            if name in done:
                continue
            amount = late_fee_amount(fee, invoice.amount_due, invoice.currency)
            if amount > 0:
                steps.append(Step(name, "late_fee", day, k, amount))
    if policy.suspend_after_last:
        offset = policy.reminder_days[-1] if policy.reminder_days else 0
        steps.append(Step("suspend", "suspend", invoice.due_date + timedelta(days=offset + 1)))
    order = {"reminder": 0, "late_fee": 1, "suspend": 2}
    return sorted((s for s in steps if s.due_on <= today and s.name not in done),
                  key=lambda s: (s.due_on, order[s.kind], s.number))  # fmt: skip


def reactivation_due(suspended: Sequence[tuple[str, Decimal]], today: date) -> Step | None:
    """The customer's reactivation once every invoice it was suspended for is settled: `suspended` lists
    (invoice id, amount still due) of the invoices with a `suspend` done and no `reactivate` yet. None while
    one of them still has an amount due (a consumer lifts the reason `invoice_overdue` for the customer as a
    whole), or when there is nothing to lift."""
    if not suspended or any(due > 0 for _, due in suspended):
        return None
    return Step("reactivate", "reactivate", today)
