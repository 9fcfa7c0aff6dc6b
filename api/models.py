"""Pydantic models of the own API's responses: the OpenAPI schema (handlers encode with msgspec)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class EventResultOut(BaseModel):
    index: int = Field(description="Position of the event in the request.")
    id: str | None = Field(description="The event's id, when it had a usable one.")
    status: Literal["accepted", "duplicate", "rejected"]
    field: str | None = Field(None, description="rejected: the first bad field.")
    reason: str | None = Field(None, description="rejected: why.")


class IngestResponse(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResultOut]


class UsageRow(BaseModel):
    window_start: str | None = Field(None, description="Start of the window (RFC 3339, in the requested zone).")
    window_end: str | None = None
    customer: str | None = None
    subject: str | None = None
    meter: str | None = None
    dimensions: dict[str, str] | None = None
    currency: str
    quantity: str = Field(description="Exact decimal.")
    amount: str = Field(description="Streamed (running) amount, exact decimal, not rounded.")
    events: int


class UsageResponse(BaseModel):
    tenant: str
    window: Literal["hour", "day", "month"] | None
    tz: str
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    rows: list[UsageRow]


class MeterAmount(BaseModel):
    meter: str
    currency: str
    quantity: str
    amount: str
    events: int


class CurrencyTotal(BaseModel):
    currency: str
    amount: str = Field(description="Exact sum of the streamed amounts.")
    amount_rounded: str = Field(description="Rounded once to the currency's minor unit (half away from zero).")


class RunningAmount(BaseModel):
    tenant: str
    customer: str
    period: str
    meters: list[MeterAmount]
    totals: list[CurrencyTotal]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, dict[str, str | bool]] = Field(default_factory=dict)
