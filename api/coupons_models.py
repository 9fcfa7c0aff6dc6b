"""Pydantic models of /v1/coupons and /v1/customers/{id}/coupons (docs/coupons.md): the edge.

Money and percentages are decimal strings (a JSON number is refused: a float cannot carry a decimal exactly).
The tenant is never in a body: it is the API key's. The store (entities/coupons.py) checks the rest and
answers errors naming the field.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field

from meterstream.api.entities_models import Code, Money, Name, _In
from meterstream.entities.coupons import AppliedCoupon, CouponOverrides, CouponSpec, StoredCoupon

LineCode = Annotated[str, Field(min_length=1, max_length=128)]


class CouponCreate(_In):
    code: Code
    name: Name
    description: str | None = Field(default=None, max_length=1024)
    kind: Literal["percentage", "fixed"]
    percent_off: Money | None = Field(default=None, description="Percentage coupons: 10 is 10 % (0 < p <= 100).")
    amount_off: Money | None = Field(default=None, description="Fixed coupons: the amount in `currency`.")
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    duration: Literal["once", "repeating", "forever"] = "once"
    duration_periods: int | None = Field(default=None, ge=1, le=1200, description="Repeating coupons: periods.")
    applies_to: list[LineCode] | None = Field(
        default=None, description="Only lines with these codes (meters, charge codes); absent: the whole invoice."
    )
    reusable: bool = True
    expires_at: AwareDatetime | None = None

    def to_spec(self, tenant: str) -> CouponSpec:
        return CouponSpec(
            tenant=tenant, code=self.code, name=self.name, kind=self.kind, percent_off=self.percent_off,
            amount_off=self.amount_off, currency=self.currency, duration=self.duration,
            duration_periods=self.duration_periods,
            applies_to=tuple(self.applies_to) if self.applies_to is not None else None,
            reusable=self.reusable, expires_at=self.expires_at, description=self.description,
        )  # fmt: skip


class CouponOut(BaseModel):
    id: str
    code: str
    name: str
    description: str | None
    kind: str
    percent_off: str | None
    amount_off: str | None
    currency: str | None
    duration: str
    duration_periods: int | None
    applies_to: list[str] | None
    reusable: bool
    expires_at: datetime | None
    status: Literal["active", "terminated"]
    created_at: datetime
    terminated_at: datetime | None


class CouponList(BaseModel):
    items: list[CouponOut]
    page: int
    per_page: int
    total: int


def coupon_out(c: StoredCoupon) -> dict:
    s = c.spec
    return {
        "id": c.id, "code": s.code, "name": s.name, "description": s.description, "kind": s.kind,
        "percent_off": str(s.percent_off) if s.percent_off is not None else None,
        "amount_off": str(s.amount_off) if s.amount_off is not None else None, "currency": s.currency,
        "duration": s.duration, "duration_periods": s.duration_periods,
        "applies_to": list(s.applies_to) if s.applies_to is not None else None, "reusable": s.reusable,
        "expires_at": s.expires_at, "status": c.status, "created_at": c.created_at, "terminated_at": c.terminated_at,
    }  # fmt: skip


class CouponApply(_In):
    coupon_code: Code
    percent_off: Money | None = Field(default=None, description="Overrides the coupon's percentage.")
    amount_off: Money | None = Field(default=None, description="Overrides the coupon's amount.")
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    duration: Literal["once", "repeating", "forever"] | None = None
    duration_periods: int | None = Field(default=None, ge=1, le=1200)

    def overrides(self) -> CouponOverrides:
        return CouponOverrides(self.percent_off, self.amount_off, self.currency, self.duration,
                               self.duration_periods)  # fmt: skip


class AppliedCouponOut(BaseModel):
    id: str
    customer: str
    coupon_code: str
    name: str
    kind: str
    percent_off: str | None
    amount_off: str | None
    currency: str | None
    duration: str
    duration_periods: int | None
    status: Literal["active", "terminated"]
    applied_at: datetime
    terminated_at: datetime | None
    periods_used: int = Field(description="Issued invoices it was applied to (derived from them).")
    periods_remaining: int | None
    amount_remaining: str | None = Field(description="Fixed coupons used once: what is left.")


class AppliedCouponList(BaseModel):
    items: list[AppliedCouponOut]


def _dec(value: Decimal | None) -> str | None:
    return str(value) if value is not None else None


def applied_out(a: AppliedCoupon) -> dict:
    t = a.terms
    return {
        "id": a.id, "customer": a.customer, "coupon_code": t.code, "name": a.coupon.spec.name, "kind": t.kind,
        "percent_off": _dec(t.percent_off), "amount_off": _dec(t.amount_off), "currency": t.currency,
        "duration": t.duration, "duration_periods": t.duration_periods, "status": a.status,
        "applied_at": a.applied_at, "terminated_at": a.terminated_at, "periods_used": a.periods_used,
        "periods_remaining": a.periods_remaining, "amount_remaining": _dec(a.amount_remaining),
    }  # fmt: skip
