"""OpenMeter's JSON shapes (requests validated with pydantic, responses rendered from the entities).

Field names and formats follow OpenMeter's API (camelCase, RFC 3339 times in UTC), as the Python SDK
`openmeter==1.0.0b236` sends and reads them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from meterstream.entities.customers import Customer
from meterstream.entities.meters import Meter
from meterstream.entities.subjects import Subject
from meterstream.schemas.entities import Address

Aggregation = Literal["SUM", "COUNT", "UNIQUE_COUNT", "AVG", "MIN", "MAX", "LATEST"]


class _In(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class MeterCreateIn(_In):
    slug: str = Field(max_length=128, description="The Meterstream meter name: ^[a-z][a-z0-9_.-]{0,127}$")
    event_type: str = Field(alias="eventType", min_length=1, max_length=256)
    aggregation: Aggregation
    value_property: str | None = Field(None, alias="valueProperty", max_length=1024)
    group_by: dict[str, str] = Field(default_factory=dict, alias="groupBy", max_length=64)
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=1024)
    metadata: dict[str, Any] | None = None
    event_from: AwareDatetime | None = Field(None, alias="eventFrom")


class MeterUpdateIn(_In):
    """OpenMeter's MeterUpdate: name, description and metadata as given (left out: cleared); `groupBy` left out keeps
    the meter's group-bys, given it must keep each of them and may add new ones."""

    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=1024)
    metadata: dict[str, Any] | None = None
    group_by: dict[str, str] | None = Field(None, alias="groupBy", max_length=64)


class MeterQueryIn(_In):
    """OpenMeter's MeterQueryRequest (POST /meters/{meterIdOrSlug}/query): the GET query's parameters in a body."""

    client_id: str | None = Field(None, alias="clientId", max_length=36)
    from_: AwareDatetime | None = Field(None, alias="from")
    to: AwareDatetime | None = None
    window_size: str | None = Field(None, alias="windowSize", max_length=16)
    window_time_zone: str = Field("UTC", alias="windowTimeZone", max_length=64)
    subject: list[str] | None = Field(None, max_length=100)
    filter_customer_id: list[str] | None = Field(None, alias="filterCustomerId", max_length=100)
    filter_group_by: dict[str, str] | None = Field(None, alias="filterGroupBy", max_length=64)
    group_by: list[str] | None = Field(None, alias="groupBy", max_length=64)


class SubjectUpsertIn(_In):
    key: str = Field(min_length=1, max_length=256)
    display_name: str | None = Field(None, alias="displayName", max_length=256)
    metadata: dict[str, Any] | None = None
    current_period_start: AwareDatetime | None = Field(None, alias="currentPeriodStart")
    current_period_end: AwareDatetime | None = Field(None, alias="currentPeriodEnd")
    stripe_customer_id: str | None = Field(None, alias="stripeCustomerId", max_length=256)


class UsageAttributionIn(_In):
    subject_keys: list[str] = Field(alias="subjectKeys", max_length=1000)


class AddressIn(_In):
    """OpenMeter's billingAddress; stored as the customer's `address` (country: ISO 3166-1 alpha-2)."""

    country: str | None = Field(None, max_length=2)
    postal_code: str | None = Field(None, alias="postalCode", max_length=256)
    state: str | None = Field(None, max_length=256)
    city: str | None = Field(None, max_length=256)
    line1: str | None = Field(None, max_length=256)
    line2: str | None = Field(None, max_length=256)
    phone_number: str | None = Field(None, alias="phoneNumber", max_length=64)

    def to_address(self) -> Address:
        return Address(line1=self.line1, line2=self.line2, city=self.city, postal_code=self.postal_code,
                       state=self.state, country=self.country, phone_number=self.phone_number)  # fmt: skip


class CustomerCreateIn(_In):
    """OpenMeter's CustomerCreate and CustomerReplaceUpdate (the same fields); `timezone` (IANA, the billing
    time zone) is Meterstream's addition."""

    name: str = Field(min_length=1, max_length=256)
    key: str | None = Field(None, min_length=1, max_length=256)
    description: str | None = Field(None, max_length=1024)
    primary_email: str | None = Field(None, alias="primaryEmail", max_length=256)
    currency: str | None = Field(None, max_length=3)
    metadata: dict[str, Any] | None = None
    usage_attribution: UsageAttributionIn | None = Field(None, alias="usageAttribution")
    billing_address: AddressIn | None = Field(None, alias="billingAddress")
    timezone: str | None = Field(None, min_length=1, max_length=64)


def rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def meter_json(m: Meter) -> dict[str, Any]:
    return _compact({
        "id": m.id, "slug": m.slug, "name": m.name or m.slug, "description": m.description,
        "aggregation": m.aggregation, "eventType": m.event_type, "valueProperty": m.value_property,
        "groupBy": dict(m.group_by), "eventFrom": rfc3339(m.event_from), "metadata": m.metadata,
        "createdAt": rfc3339(m.created_at), "updatedAt": rfc3339(m.updated_at), "deletedAt": rfc3339(m.deleted_at),
    })  # fmt: skip


def subject_json(s: Subject) -> dict[str, Any]:
    return _compact({
        "id": s.id, "key": s.key, "displayName": s.display_name, "metadata": s.metadata,
        "currentPeriodStart": rfc3339(s.current_period_start), "currentPeriodEnd": rfc3339(s.current_period_end),
        "stripeCustomerId": s.stripe_customer_id, "createdAt": rfc3339(s.created_at),
        "updatedAt": rfc3339(s.updated_at),
    })  # fmt: skip


def address_json(a: Address | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return _compact({"country": a.country, "postalCode": a.postal_code, "state": a.state, "city": a.city,
                     "line1": a.line1, "line2": a.line2, "phoneNumber": a.phone_number})  # fmt: skip


def customer_json(c: Customer) -> dict[str, Any]:
    return _compact({
        "id": c.id, "key": c.key, "name": c.name, "description": c.description, "primaryEmail": c.primary_email,
        "currency": c.currency, "metadata": c.metadata, "usageAttribution": {"subjectKeys": list(c.subject_keys)},
        "billingAddress": address_json(c.billing_address), "timezone": c.timezone,
        "createdAt": rfc3339(c.created_at), "updatedAt": rfc3339(c.updated_at), "deletedAt": rfc3339(c.deleted_at),
    })  # fmt: skip


# the customer document's field paths (entities/customers.py, Invalid.field) as OpenMeter's API names them
_CUSTOMER_FIELDS = {"email": "primaryEmail", "external_id": "key", "address": "billingAddress"}
_ADDRESS_FIELDS = {"postal_code": "postalCode", "phone_number": "phoneNumber"}


def openmeter_field(field: str) -> str:
    """`address.postal_code` -> `billingAddress.postalCode`, `email` -> `primaryEmail`, others unchanged."""
    head, dot, rest = field.partition(".")
    if head == "address" and dot:
        return f"billingAddress.{_ADDRESS_FIELDS.get(rest, rest)}"
    return _CUSTOMER_FIELDS.get(head, head) + dot + rest


def json_number(value: Decimal) -> int | float:
    """OpenMeter answers values as JSON numbers: integers stay exact, others become the nearest double."""
    return int(value) if value == value.to_integral_value() and abs(value) < 2**63 else float(value)
