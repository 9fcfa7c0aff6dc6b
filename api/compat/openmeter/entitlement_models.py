"""OpenMeter's JSON shapes of features, entitlements (v2) and grants: requests validated with pydantic, responses
rendered from the entities (entities/entitlements.py). Field names as OpenMeter's API and SDK 1.0.0b236 use them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from meterstream.entities.entitlements import Entitlement, Feature, Reset, StoredGrant
from meterstream.entitlements.periods import interval_iso, interval_name, period_at

from .models import json_number

KEY_PATTERN = r"^[a-z0-9]+(?:_[a-z0-9]+)*$"


class _In(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class FeatureIn(_In):
    key: str = Field(min_length=1, max_length=64, pattern=KEY_PATTERN)
    name: str = Field(min_length=1, max_length=256)
    meter_slug: str | None = Field(None, alias="meterSlug", max_length=128)
    meter_group_by_filters: dict[str, str] | None = Field(None, alias="meterGroupByFilters", max_length=64)
    metadata: dict[str, str] | None = None


class UsagePeriodIn(_In):
    interval: str = Field(min_length=1, max_length=16)
    anchor: AwareDatetime | None = None


class IssueIn(_In):
    amount: Decimal = Field(ge=0, max_digits=38, decimal_places=12)
    priority: int = Field(1, ge=1, le=255)


class ExpirationIn(_In):
    duration: Literal["HOUR", "DAY", "WEEK", "MONTH", "YEAR"]
    count: int = Field(ge=1, le=1000)


class RecurrenceIn(_In):
    interval: str = Field(min_length=1, max_length=16)
    anchor: AwareDatetime | None = None


class ResetIn(_In):
    effective_at: AwareDatetime | None = Field(None, alias="effectiveAt")
    retain_anchor: bool = Field(False, alias="retainAnchor")
    preserve_overage: bool | None = Field(None, alias="preserveOverage")


class GrantIn(_In):
    amount: Decimal = Field(max_digits=38, decimal_places=12)
    priority: int = Field(0, ge=0, le=255)
    effective_at: AwareDatetime = Field(alias="effectiveAt")
    expiration: ExpirationIn | None = None
    max_rollover_amount: Decimal | None = Field(None, alias="maxRolloverAmount", ge=0, max_digits=38, decimal_places=12)
    min_rollover_amount: Decimal = Field(Decimal(0), alias="minRolloverAmount", ge=0, max_digits=38, decimal_places=12)
    recurrence: RecurrenceIn | None = None
    metadata: dict[str, str] | None = None
    annotations: dict[str, Any] | None = None


class EntitlementIn(_In):
    type: Literal["metered", "boolean", "static"]
    feature_key: str | None = Field(None, alias="featureKey", max_length=64)
    feature_id: str | None = Field(None, alias="featureId", max_length=26)
    metadata: dict[str, str] | None = None
    usage_period: UsagePeriodIn | None = Field(None, alias="usagePeriod")
    is_soft_limit: bool | None = Field(None, alias="isSoftLimit")
    preserve_overage_at_reset: bool | None = Field(None, alias="preserveOverageAtReset")
    measure_usage_from: str | AwareDatetime | None = Field(None, alias="measureUsageFrom")
    issue_after_reset: Decimal | None = Field(None, alias="issueAfterReset", ge=0, max_digits=38, decimal_places=12)
    issue_after_reset_priority: int | None = Field(None, alias="issueAfterResetPriority", ge=1, le=255)
    issue: IssueIn | None = None
    grants: list[GrantIn] | None = Field(None, max_length=100)
    config: str | None = Field(None, max_length=65_536)


def _t(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def feature_json(f: Feature) -> dict[str, Any]:
    return _drop_none({
        "id": f.id, "key": f.key, "name": f.name, "meterSlug": f.meter_slug,
        "meterGroupByFilters": f.group_by_filters or None, "metadata": f.metadata,
        "createdAt": _t(f.created_at), "updatedAt": _t(f.updated_at), "archivedAt": _t(f.archived_at),
    })  # fmt: skip


def current_period(e: Entitlement, now: datetime, resets: Sequence[Reset] = ()) -> tuple[datetime, datetime] | None:
    """The usage period holding `now` (the first one begins at `measureUsageFrom`, each reset begins one)."""
    timeline = e.timeline(resets)
    return None if timeline is None else timeline.period_at(now)


def entitlement_json(
    e: Entitlement, customer_key: str | None, now: datetime, resets: Sequence[Reset] = ()
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": e.type, "id": e.id, "featureKey": e.feature_key, "featureId": e.feature_id,
        "customerId": e.customer_id, "customerKey": customer_key, "metadata": e.metadata,
        "createdAt": _t(e.created_at), "updatedAt": _t(e.updated_at), "deletedAt": _t(e.deleted_at),
        "activeFrom": _t(e.created_at), "activeTo": _t(e.deleted_at),
    }  # fmt: skip
    if e.usage_interval is not None and e.usage_anchor is not None:
        body["usagePeriod"] = {"interval": interval_name(e.usage_interval), "anchor": _t(e.usage_anchor),
                               "intervalISO": interval_iso(e.usage_interval)}  # fmt: skip
        period = current_period(e, now, resets)
        if period is not None:
            body["currentUsagePeriod"] = {"from": _t(period[0]), "to": _t(period[1])}
    if e.type == "metered":
        body["measureUsageFrom"] = _t(e.measure_usage_from)
        body["lastReset"] = _t(max([e.measure_usage_from, *(r.at for r in resets)]))  # type: ignore[type-var]
        body["isSoftLimit"] = e.is_soft_limit
        body["preserveOverageAtReset"] = e.preserve_overage
        if e.issue_amount is not None:
            body["issueAfterReset"] = json_number(e.issue_amount)
            body["issueAfterResetPriority"] = e.issue_priority
            body["issue"] = {"amount": json_number(e.issue_amount), "priority": e.issue_priority}
    elif e.type == "static":
        body["config"] = e.config
    return _drop_none(body)


def grant_json(stored: StoredGrant, now: datetime) -> dict[str, Any]:
    g = stored.grant
    body: dict[str, Any] = {
        "id": g.id, "entitlementId": stored.entitlement_id, "amount": json_number(g.amount), "priority": g.priority,
        "effectiveAt": _t(g.effective_at), "createdAt": _t(g.created_at), "updatedAt": _t(stored.updated_at),
        "maxRolloverAmount": json_number(g.amount if g.max_rollover is None else g.max_rollover),
        "minRolloverAmount": json_number(g.min_rollover), "expiresAt": _t(g.expires_at), "voidedAt": _t(g.voided_at),
        "metadata": stored.metadata, "annotations": stored.annotations,
    }  # fmt: skip
    if stored.expiration is not None:
        body["expiration"] = {"duration": stored.expiration[0], "count": stored.expiration[1]}
    if g.recurrence is not None:
        interval, anchor = g.recurrence
        body["recurrence"] = {"interval": interval_name(interval), "anchor": _t(anchor),
                              "intervalISO": interval_iso(interval)}  # fmt: skip
        start, end = period_at(anchor, interval, now)
        body["nextRecurrence"] = _t(start if start == now else end)
    return _drop_none(body)


Page = Annotated[int, Query(ge=1, le=1_000_000)]  # OpenMeter's paginated lists (v2)
PageSize = Annotated[int, Query(alias="pageSize", ge=1, le=1000)]
V1Page = Annotated[int | None, Query(ge=1, le=1_000_000)]  # v1 lists: a page only when asked for
V1PageSize = Annotated[int | None, Query(alias="pageSize", ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]
Limit = Annotated[int, Query(ge=1, le=1000)]


def v1_page(items: list[Any], page: int | None, page_size: int | None, offset: int, limit: int) -> Any:
    if page is None and page_size is None:  # OpenMeter's v1 lists: a plain array unless a page is asked for
        return items[offset : offset + limit]
    return paginated(items, page or 1, page_size or 100)


def paginated(items: list[Any], page: int, page_size: int) -> dict[str, Any]:
    start = (page - 1) * page_size
    return {"totalCount": len(items), "page": page, "pageSize": page_size, "items": items[start : start + page_size]}


__all__ = [
    "EntitlementIn",
    "FeatureIn",
    "GrantIn",
    "Limit",
    "Offset",
    "ResetIn",
    "V1Page",
    "V1PageSize",
    "current_period",
    "entitlement_json",
    "feature_json",
    "grant_json",
    "paginated",
    "v1_page",
]  # fmt: skip
