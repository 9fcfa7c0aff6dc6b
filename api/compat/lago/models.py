"""Pydantic models of the Lago layer's bodies: its OpenAPI document (handlers parse and encode themselves).

Request bodies follow Lago's own spec (getlago/lago-openapi `EventInputObject`, `BillableMetricBaseInput`,
`SubscriptionCreateInput`, plans, customers); answers are Lago's objects plus a `meterstream` object.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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


class _Open(BaseModel):
    """Lago objects carry more fields than these (see docs/lago.md); the listed ones are always present."""

    model_config = ConfigDict(extra="allow")


class ChargeIn(_Open):
    billable_metric_id: str = Field(description="The billable metric's lago_id (or send billable_metric_code).")
    charge_model: Literal["standard", "graduated", "volume", "package", "percentage"]
    properties: dict[str, Any] | None = None
    min_amount_cents: int | None = None
    pay_in_advance: bool | None = None


class MinimumCommitmentIn(_Open):
    amount_cents: int


class PlanIn(_Open):
    name: str
    code: str
    interval: Literal["weekly", "monthly", "quarterly", "yearly"]
    amount_cents: int = Field(description="The recurring fee in the currency's minor unit (0: none).")
    amount_currency: str
    pay_in_advance: bool | None = Field(None, description="The recurring fee billed in advance (else in arrears).")
    charges: list[ChargeIn] | None = None
    minimum_commitment: MinimumCommitmentIn | None = None


class PlanInput(BaseModel):
    plan: PlanIn


class ChargeObject(_Open):
    lago_id: str
    lago_billable_metric_id: str | None
    billable_metric_code: str
    charge_model: str
    properties: dict[str, Any]


class PlanObject(_Open):
    lago_id: str
    name: str
    code: str
    interval: str
    amount_cents: int
    amount_currency: str
    pay_in_advance: bool
    active_subscriptions_count: int
    charges: list[ChargeObject]


class PlanOut(BaseModel):
    plan: PlanObject


class PlansOut(BaseModel):
    plans: list[PlanObject]
    meta: Meta


class CustomerIn(_Open):
    external_id: str
    name: str | None = None
    legal_name: str | None = None
    email: str | None = None
    currency: str | None = None
    timezone: str | None = None
    country: str | None = None
    tax_identification_number: str | None = None
    net_payment_term: int | None = None
    metadata: list[dict[str, Any]] | None = None


class CustomerInput(BaseModel):
    customer: CustomerIn


class CustomerObject(_Open):
    lago_id: str
    external_id: str
    name: str
    currency: str | None
    timezone: str
    applicable_timezone: str
    created_at: str
    updated_at: str


class CustomerOut(BaseModel):
    customer: CustomerObject


class CustomersOut(BaseModel):
    customers: list[CustomerObject]
    meta: Meta


class ChargeUsageObject(_Open):
    units: str
    events_count: int
    amount_cents: int
    amount_currency: str
    charge: dict[str, Any]
    billable_metric: dict[str, Any]


class CustomerUsageObject(_Open):
    from_datetime: str
    to_datetime: str
    issuing_date: str
    currency: str
    amount_cents: int
    taxes_amount_cents: int
    total_amount_cents: int
    charges_usage: list[ChargeUsageObject]


class CustomerUsageOut(BaseModel):
    customer_usage: CustomerUsageObject


class SubscriptionCreateIn(_Open):
    external_id: str
    external_customer_id: str
    plan_code: str | None = Field(None, description="A plan of the store (absent: event attribution only).")
    name: str | None = None
    subscription_at: str | None = None
    ending_at: str | None = None
    billing_time: Literal["calendar", "anniversary"] | None = None


class SubscriptionCreateInput(BaseModel):
    subscription: SubscriptionCreateIn


class SubscriptionUpdateIn(_Open):
    name: str | None = None
    ending_at: str | None = Field(None, description="ISO 8601; null: the subscription runs on until terminated.")
    subscription_at: str | None = Field(None, description="ISO 8601; only before the subscription starts.")


class SubscriptionUpdateInput(BaseModel):
    subscription: SubscriptionUpdateIn


class LagoSubscriptionObject(_Open):
    lago_id: str
    external_id: str
    external_customer_id: str
    plan_code: str | None
    status: str
    billing_time: str
    subscription_at: str


class LagoSubscriptionOut(BaseModel):
    subscription: LagoSubscriptionObject


class LagoSubscriptionsOut(BaseModel):
    subscriptions: list[LagoSubscriptionObject]
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
