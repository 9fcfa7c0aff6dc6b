"""Pydantic models of the own API's entity routes (/v1/customers, /v1/plans, /v1/subscriptions): the edge.

Requests are validated here (shape, types, no floats for money, aware times) and converted to the
documents of schemas/entities.py, which the store (entities/) validates further (prices, tiers,
currencies, overlaps). Responses are built from those documents. Money is a decimal string both ways;
a JSON number is refused for money because a binary float cannot carry a decimal amount exactly.
The tenant is never part of a request body: it is the API key's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from meterstream.entities.subscriptions import start_now
from meterstream.rating.money import CURRENCY_MINOR_UNITS, to_decimal
from meterstream.schemas.entities import (
    Address,
    CustomerDoc,
    FixedCharge,
    InstallmentCharge,
    OneTimeCharge,
    Phase,
    PlanVersionDoc,
    SubscriptionDoc,
)

_DECIMAL = r"^-?[0-9]+(\.[0-9]+)?$"
MAX_INT = 2**31 - 1  # versions and offsets are 32-bit integers in the store


def _money(value: Any) -> Decimal:
    if isinstance(value, str) and not value.strip():
        raise ValueError('a decimal string such as "10.00"')
    try:
        return to_decimal(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None


Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    WithJsonSchema({"type": "string", "pattern": _DECIMAL, "description": "A decimal string (never a JSON number)."}),
]
Name = Annotated[str, Field(min_length=1, max_length=256)]
# usable as a Kafka key part, a URL segment and in `code@version`: no '@', '/', spaces or control characters
Code = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
ExternalId = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f/]+$")]
Interval = Literal["weekly", "monthly", "quarterly", "yearly"]


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- customers -----------------------------------------------------------------------------------------


class AddressModel(_In):
    line1: str | None = Field(None, max_length=256)
    line2: str | None = Field(None, max_length=256)
    city: str | None = Field(None, max_length=256)
    postal_code: str | None = Field(None, max_length=32)
    state: str | None = Field(None, max_length=128)
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    phone_number: str | None = Field(None, max_length=64)


class CustomerFields(_In):
    name: Name
    description: str | None = Field(None, max_length=1024)
    legal_name: str | None = Field(None, max_length=256)
    email: str | None = Field(None, max_length=256, pattern=r"^[^@\s]+@[^@\s]+$")
    tax_id: str | None = Field(None, max_length=64)
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    address: AddressModel | None = None
    currency: str | None = Field(None, description="ISO 4217, e.g. EUR")
    timezone: str = Field("UTC", max_length=64, description="IANA time zone: billing periods are computed in it")
    invoice_grace_days: int = Field(0, ge=0, le=365)
    payment_terms_days: int = Field(0, ge=0, le=365, description="net days from issue to due date")
    metadata: dict[str, str] = Field(default_factory=dict)
    version: int | None = Field(
        None, ge=1, le=MAX_INT, description="Optimistic lock: the version you read (or send `If-Match`); stale -> 409."
    )
    finalized_until: AwareDatetime | None = Field(
        None, description="Read-only (what GET answered); accepted so a read document can be sent back, ignored."
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, code: str | None) -> str | None:
        if code is not None and code not in CURRENCY_MINOR_UNITS:
            raise ValueError(f"unknown currency {code!r} (expected an active ISO 4217 code)")
        return code

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (expected an IANA name such as Europe/Berlin)") from None
        return name

    def to_doc(self, tenant: str, external_id: str) -> CustomerDoc:
        data = self.model_dump(exclude={"version", "address", "external_id", "finalized_until"})
        address = msgspec.convert(self.address.model_dump(), Address) if self.address is not None else None
        return CustomerDoc(tenant=tenant, external_id=external_id, version=self.version or 0, address=address, **data)


class CustomerCreate(CustomerFields):
    """POST /v1/customers: create, or update the customer with this `external_id`."""

    external_id: ExternalId = Field(description="Your id of the customer: the `customer` of its usage events.")


class CustomerUpdate(CustomerFields):
    """PUT /v1/customers/{external_id}: the whole customer (fields left out take their defaults)."""

    external_id: ExternalId | None = Field(None, description="Optional; must equal the path's.")


class AddressOut(BaseModel):
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    state: str | None = None
    country: str | None = None
    phone_number: str | None = None


class CustomerOut(BaseModel):
    external_id: str
    name: str
    version: int
    description: str | None = None
    legal_name: str | None = None
    email: str | None = None
    tax_id: str | None = None
    country: str | None = None
    address: AddressOut | None = None
    currency: str | None = None
    timezone: str
    invoice_grace_days: int
    payment_terms_days: int
    metadata: dict[str, str]


class CustomerDetailOut(CustomerOut):
    finalized_until: datetime | None = Field(
        None,
        description="The end of the customer's newest invoiced (finalized) billing period: subscriptions may not "
        "start, change or end before it (422 naming `start` / `at`). Null: nothing invoiced yet.",
    )


class CustomerList(BaseModel):
    items: list[CustomerOut]
    limit: int
    offset: int
    next_offset: int | None = Field(description="Pass as `offset` for the next page; null on the last page.")


# --- plans ---------------------------------------------------------------------------------------------


class FixedChargeModel(_In):
    code: Code
    name: Name
    amount: Money
    interval: Interval = "monthly"
    timing: Literal["advance", "arrears"] = "advance"
    prorate: bool = True


class OneTimeChargeModel(_In):
    code: Code
    name: Name
    amount: Money


class InstallmentChargeModel(_In):
    code: Code
    name: Name
    total: Money
    count: int = Field(ge=1, le=1000)


class PlanCreate(_In):
    """POST /v1/plans: publish a version of plan `code` (a new one only when something changed)."""

    code: Code
    name: Name
    currency: str = Field(description="ISO 4217, e.g. EUR")
    interval: Interval = "monthly"
    usage: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="meter -> price in the catalog's canonical shape (docs/pricing.md)"
    )
    telecom: dict[str, Any] | None = Field(None, description="a telecom plan in the catalog's shape (docs/telecom.md)")
    fixed: list[FixedChargeModel] = Field(default_factory=list)
    one_time: list[OneTimeChargeModel] = Field(default_factory=list)
    installments: list[InstallmentChargeModel] = Field(default_factory=list)
    minimum_commitment: Money | None = None
    addon: bool = False

    def to_doc(self, tenant: str) -> PlanVersionDoc:
        return PlanVersionDoc(
            tenant=tenant, code=self.code, version=0, name=self.name, currency=self.currency, interval=self.interval,
            usage=self.usage, telecom=self.telecom,
            fixed=[FixedCharge(**c.model_dump()) for c in self.fixed],
            one_time=[OneTimeCharge(**c.model_dump()) for c in self.one_time],
            installments=[InstallmentCharge(**c.model_dump()) for c in self.installments],
            minimum_commitment=self.minimum_commitment, addon=self.addon,
        )  # fmt: skip


class FixedChargeOut(BaseModel):
    code: str
    name: str
    amount: str
    interval: str
    timing: str
    prorate: bool


class OneTimeChargeOut(BaseModel):
    code: str
    name: str
    amount: str


class InstallmentChargeOut(BaseModel):
    code: str
    name: str
    total: str
    count: int


class PlanOut(BaseModel):
    code: str
    version: int
    rating_id: str = Field(description="`code@version`: the `plan` of usage rated with this version")
    name: str
    currency: str
    interval: str
    usage: dict[str, dict[str, Any]]
    telecom: dict[str, Any] | None = None
    fixed: list[FixedChargeOut]
    one_time: list[OneTimeChargeOut]
    installments: list[InstallmentChargeOut]
    minimum_commitment: str | None = None
    addon: bool
    published_at: datetime | None = None


class PlanList(BaseModel):
    items: list[PlanOut]


# --- subscriptions -------------------------------------------------------------------------------------


class SubscriptionCreate(_In):
    """POST /v1/subscriptions: a customer on a plan from `start` (default: now), optionally until `end`."""

    external_id: ExternalId
    customer: ExternalId = Field(description="The customer's external id; \"*\" = the tenant's default subscription.")
    plan: Code
    plan_version: int | None = Field(None, ge=1, le=MAX_INT, description="default: the plan's newest version")
    start: AwareDatetime | None = Field(None, description="RFC 3339 with an offset; default: now, the current second")
    end: AwareDatetime | None = None
    billing_anchor: Literal["calendar", "anniversary"] = "calendar"
    trial_end: AwareDatetime | None = None
    name: str | None = Field(None, max_length=256)
    usage_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="meter -> this customer's own price (canonical shape)"
    )
    fixed_overrides: dict[str, Money] = Field(default_factory=dict, description="fixed charge code -> own amount")
    addons: list[Code] = Field(default_factory=list, description="add-on plan codes")

    def to_doc(self, tenant: str, plan_version: int, now: datetime) -> SubscriptionDoc:
        start = _utc(self.start) or start_now(now)
        phase = Phase(
            plan_code=self.plan, plan_version=plan_version, start=start, end=_utc(self.end),
            usage_overrides=self.usage_overrides, fixed_overrides=self.fixed_overrides, addons=self.addons,
        )  # fmt: skip
        return SubscriptionDoc(
            tenant=tenant, external_id=self.external_id, customer=self.customer, phases=[phase], version=0,
            billing_anchor=self.billing_anchor, trial_end=_utc(self.trial_end), name=self.name,
            status="pending" if start > now else "active",
        )  # fmt: skip


class PlanChange(_In):
    """POST /v1/subscriptions/{id}/change: from `at` on, the subscription is on `plan`."""

    plan: Code
    at: AwareDatetime | None = Field(None, description="RFC 3339; default now; in the future = a pending change")
    plan_version: int | None = Field(None, ge=1, le=MAX_INT, description="default: the plan's newest version")
    version: int | None = Field(
        None, ge=1, le=MAX_INT, description="Optimistic lock: the subscription version you read"
    )


class Cancel(_In):
    """POST /v1/subscriptions/{id}/cancel: the subscription ends at `at` (default now)."""

    at: AwareDatetime | None = Field(None, description="RFC 3339; default now")
    version: int | None = Field(
        None, ge=1, le=MAX_INT, description="Optimistic lock: the subscription version you read"
    )


class SubscriptionUpdate(_In):
    """PATCH /v1/subscriptions/{id}: what is given changes, what is left out stays (entities.subscriptions
    `update_subscription`)."""

    name: str | None = Field(None, max_length=256)
    end: AwareDatetime | None = Field(None, description="RFC 3339: the subscription ends then (later phases are "
                                      "dropped, an earlier end extended); null: it runs on until canceled")  # fmt: skip
    start: AwareDatetime | None = Field(None, description="RFC 3339; only before the subscription starts")
    version: int | None = Field(
        None, ge=1, le=MAX_INT, description="Optimistic lock: the subscription version you read"
    )


class PhaseOut(BaseModel):
    plan_code: str
    plan_version: int
    start: datetime
    end: datetime | None = None
    usage_overrides: dict[str, dict[str, Any]]
    fixed_overrides: dict[str, str]
    addons: list[str]


class SubscriptionOut(BaseModel):
    external_id: str
    customer: str
    version: int
    status: str
    billing_anchor: str
    trial_end: datetime | None = None
    name: str | None = None
    phases: list[PhaseOut]


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


# --- documents -> response bodies ----------------------------------------------------------------------


def doc_body(doc: CustomerDoc | PlanVersionDoc | SubscriptionDoc) -> dict[str, Any]:
    """A document as a JSON-ready dict (decimals as strings, times RFC 3339), without tenant and tags."""
    out: dict[str, Any] = msgspec.to_builtins(doc)
    out.pop("tenant", None)
    out.pop("type", None)
    out.pop("deleted", None)
    if isinstance(doc, PlanVersionDoc):
        out["rating_id"] = doc.rating_id
    return out


__all__ = [
    "Cancel",
    "CustomerCreate",
    "CustomerDetailOut",
    "CustomerList",
    "CustomerOut",
    "CustomerUpdate",
    "PlanChange",
    "PlanCreate",
    "PlanList",
    "PlanOut",
    "SubscriptionCreate",
    "SubscriptionList",
    "SubscriptionOut",
    "doc_body",
]
