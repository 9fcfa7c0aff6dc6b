"""Pydantic models of the Lago layer's bodies: its OpenAPI document (handlers parse and encode themselves).

Request bodies follow Lago's own spec (getlago/lago-openapi `EventInputObject`, `BillableMetricBaseInput`,
`SubscriptionCreateInput`); answers are Lago's objects plus `external_customer_id` and `meterstream`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class EventIn(BaseModel):
    transaction_id: str = Field(description="Idempotency key: a transaction id sent again is a duplicate.")
    external_subscription_id: str | None = Field(None, description="The subscription (required unless "
                                                 "external_customer_id is given).")  # fmt: skip
    external_customer_id: str | None = Field(None, description="Who is charged (else the subscription's customer).")
    code: str = Field(description="The billable metric's code.")
    timestamp: int | float | str | None = Field(None, description="Unix seconds (decimals allowed); default: now.")
    properties: dict[str, Any] | None = None
    precise_total_amount_cents: str | int | float | None = None


class EventInput(BaseModel):
    event: EventIn


class EventBatchInput(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=100)


class Meterstream(BaseModel):
    """What Meterstream did with the event (Lago clients ignore it)."""

    status: Literal["accepted", "duplicate", "unmatched", "rejected", "rated", "dead_lettered"]
    event_ids: list[str] = Field(description="Meterstream usage event ids (one per metric the code feeds).")
    field: str | None = None
    reason: str | None = None
    stage: str | None = None
    meters: list[str] | None = None


class EventObject(BaseModel):
    lago_id: str | None
    transaction_id: str | None
    lago_customer_id: None
    code: str | None
    timestamp: str | None = Field(description="ISO 8601, UTC, milliseconds.")
    precise_total_amount_cents: str | None
    properties: dict[str, Any] | None
    lago_subscription_id: None
    external_subscription_id: str | None
    external_customer_id: str | None
    created_at: str | None
    meterstream: Meterstream


class EventOut(BaseModel):
    event: EventObject


class EventsOut(BaseModel):
    events: list[EventObject]


class LagoError(BaseModel):
    status: int
    error: str
    code: str | None = None
    error_details: dict[str, Any] | None = None


class BatchError(LagoError):
    events: list[EventObject] | None = Field(None, description="422: every event of the batch with its status; "
                                             "the valid ones were stored.")  # fmt: skip


class BillableMetricIn(BaseModel):
    name: str
    code: str
    aggregation_type: str = Field(description="count_agg, sum_agg, max_agg, unique_count_agg or latest_agg.")
    field_name: str | None = None
    description: str | None = None
    recurring: bool | None = None
    expression: str | None = None
    rounding_function: str | None = None
    rounding_precision: int | None = None
    weighted_interval: str | None = None
    filters: list[dict[str, Any]] | None = None


class BillableMetricInput(BaseModel):
    billable_metric: BillableMetricIn


class BillableMetricObject(BaseModel):
    lago_id: str
    name: str
    code: str
    description: str | None
    recurring: bool
    rounding_function: None
    rounding_precision: None
    created_at: str
    expression: None
    field_name: str | None
    aggregation_type: str
    weighted_interval: None
    filters: list[Any]
    meter: str = Field(description="The Meterstream meter (the catalog prices it).")


class BillableMetricOut(BaseModel):
    billable_metric: BillableMetricObject


class Meta(BaseModel):
    current_page: int
    next_page: int | None
    prev_page: int | None
    total_pages: int
    total_count: int


class BillableMetricsOut(BaseModel):
    billable_metrics: list[BillableMetricObject]
    meta: Meta


class SubscriptionIn(BaseModel):
    external_id: str
    external_customer_id: str
    plan_code: str | None = None
    name: str | None = None


class SubscriptionInput(BaseModel):
    subscription: SubscriptionIn


class SubscriptionObject(BaseModel):
    lago_id: str
    external_id: str
    lago_customer_id: None
    external_customer_id: str
    plan_code: str | None
    name: str | None
    status: str
    billing_time: str
    created_at: str
    started_at: str
    subscription_at: str
    canceled_at: None
    terminated_at: None
    ending_at: None


class SubscriptionOut(BaseModel):
    subscription: SubscriptionObject


class SubscriptionsOut(BaseModel):
    subscriptions: list[SubscriptionObject]
    meta: Meta


# --- OpenAPI helpers of the routes -----------------------------------------------------------------


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The request body of a route that parses its own body (Lago-shaped errors, dead letters): OpenAPI only."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    body = {"required": True, "content": {"application/json": {"schema": inline(schema)}}}
    return {"requestBody": body}


def answers(ok: type[BaseModel], *codes: int, unprocessable: type[BaseModel] = LagoError) -> dict[int | str, Any]:
    """`responses=` of a route: `ok` for 200, Lago's error body for the other codes (`unprocessable` for 422)."""
    out: dict[int | str, Any] = {200: {"model": ok}}
    out.update({c: {"model": unprocessable if c == 422 else LagoError} for c in codes})
    return out
