"""Contracts between the stream processor, the ClickHouse sink and period close."""

from __future__ import annotations

from typing import Any, TypedDict

import orjson


class RatedUsage(TypedDict):
    """One deduplicated, rated event on the `rated-usage` topic (all money and quantities as strings).

    Deterministic: the same input event and state give byte-identical output, so a replay is harmless.
    """

    tenant: str
    id: str
    customer: str
    subject: str
    meter: str
    time: str  # RFC 3339, milliseconds, UTC
    period: str  # YYYY-MM, the UTC calendar month of `time`
    quantity: str
    amount: str  # unrounded streaming amount: delta of the period total this event caused
    cumulative: str  # the customer's period quantity for this meter after this event
    currency: str
    plan: str
    line: str  # invoice line grouping key (the meter, or a finer telecom key)
    dimensions: dict[str, str]
    source: str
    src_partition: int
    src_offset: int


class DeadLetter(TypedDict):
    """An input that could not be accepted or rated: kept with the reason, never dropped."""

    stage: str  # "parse" | "rate"
    field: str
    reason: str
    topic: str
    partition: int
    offset: int
    key: str | None
    raw: str  # the original bytes, as text (invalid UTF-8 replaced)
    event_id: str | None
    tenant: str | None


def dumps(record: RatedUsage | DeadLetter | dict[str, Any]) -> bytes:
    return orjson.dumps(record)
