"""What the billing domain returns: one charge line with the period it covers, amounts rounded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

__all__ = ["ChargeLine", "LineKind"]

# fixed: a recurring fee (or its prorated part); fixed_credit: unused days of a fee billed in advance
# (negative); one_time; installment; minimum_true_up
LineKind = Literal["fixed", "fixed_credit", "one_time", "installment", "minimum_true_up"]


@dataclass(frozen=True, slots=True)
class ChargeLine:
    """One invoice line. `amount` is rounded to the currency's minor unit; lines add up exactly.

    For recurring fees `unit_price` is the fee for a whole period, `quantity` the local days charged
    and `period_days` the days of the billing period: amount = the day-based share of docs/billing.md
    (within one minor unit of unit_price x quantity / period_days). Otherwise amount = unit_price x
    quantity and `period_days` is None. [start, end) is the time the line covers (UTC instants).
    """

    kind: LineKind
    code: str
    description: str
    plan: str  # rating id of the plan version the charge comes from: code@version
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    start: datetime
    end: datetime
    currency: str
    timing: Literal["advance", "arrears"] | None = None
    period_days: int | None = None

    def to_json(self) -> dict[str, object]:
        """Plain JSON-able dict: decimals as strings, instants as RFC 3339 UTC."""
        return {
            "kind": self.kind,
            "code": self.code,
            "description": self.description,
            "plan": self.plan,
            "quantity": str(self.quantity),
            "unit_price": str(self.unit_price),
            "amount": str(self.amount),
            "start": self.start.isoformat().replace("+00:00", "Z"),
            "end": self.end.isoformat().replace("+00:00", "Z"),
            "currency": self.currency,
            "timing": self.timing,
            "period_days": self.period_days,
        }
