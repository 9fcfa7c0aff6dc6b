"""Lago's response and error bodies (pure): what lago-python-client 1.55 and Lago's OpenAPI expect.

Event object: `{transaction_id, lago_id, lago_customer_id, code, timestamp (ISO 8601), properties,
precise_total_amount_cents, lago_subscription_id, external_subscription_id, created_at}` plus
`external_customer_id` and a `meterstream` object (status, usage event ids, field + reason), which
Lago clients ignore. Errors: `{"status", "error", "code", "error_details"?}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from http import HTTPStatus
from typing import Any

from meterstream.api.compat.lago.events import PRECISE_AMOUNT_KEY, LagoEvent
from meterstream.api.compat.lago.metrics import billable_metric_fields
from meterstream.api.compat.lago.service import LagoOutcome
from meterstream.entities.meters import Meter
from meterstream.ingest.translate import UNIQUE_DIMENSION
from meterstream.schemas.event import InvalidEvent, format_time


def error_body(status: int, code: str | None = None, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "error": HTTPStatus(status).phrase}
    if code is not None:
        body["code"] = code
    if details is not None:
        body["error_details"] = dict(details)
    return body


def validation_error(details: Mapping[str, Any]) -> dict[str, Any]:
    """422 `validation_errors`: `{field: [reason]}` for one event, `{"<index>": {field: [reason]}}` for a batch."""
    return error_body(422, "validation_errors", details)


def field_errors(err: InvalidEvent) -> dict[str, list[str]]:
    return {err.field: [err.reason]}


def event_object(outcome: LagoOutcome, created_at: datetime) -> dict[str, Any]:
    """The event object of a `POST /events` or `/events/batch` answer (`lago_customer_id` is null, as Lago's)."""
    event = outcome.event
    assert event is not None
    extension: dict[str, Any] = {"status": outcome.status, "event_ids": outcome.usage_ids}
    if outcome.status == "unmatched":
        extension["reason"] = f"no billable metric with code {event.code!r}: kept, and replayed once one exists"
    if outcome.not_metered:
        extension["not_metered"] = outcome.not_metered
        extension["reason"] = ("no value for these billable metrics' field_name: they count nothing for this "
                               "event (Lago's aggregation skips it)")  # fmt: skip
    if outcome.error is not None:
        extension["field"], extension["reason"] = outcome.error.field, outcome.error.reason
    return _event(
        event.transaction_id,
        lago_id=outcome.usage_ids[0] if outcome.usage_ids else None,
        code=event.code,
        time=event.time,
        properties=event.properties,
        precise=event.precise_total_amount_cents,
        subscription=event.external_subscription_id or event.subject,
        customer=outcome.customer,
        created_at=format_time(created_at),
        extension=extension,
    )


def refused_event_object(raw: Any, error: InvalidEvent) -> dict[str, Any]:
    """A batch answer's entry for an event refused before it could be read: its own fields, as sent."""
    raw = raw if isinstance(raw, dict) else {}

    def text(name: str) -> str | None:
        value = raw.get(name)
        return value if isinstance(value, str) else None

    return {
        "lago_id": None, "transaction_id": text("transaction_id"), "lago_customer_id": None, "code": text("code"),
        "timestamp": None, "precise_total_amount_cents": None,
        "properties": raw.get("properties") if isinstance(raw.get("properties"), dict) else None,
        "lago_subscription_id": None, "external_subscription_id": text("external_subscription_id"),
        "external_customer_id": text("external_customer_id"), "created_at": None,
        "meterstream": {"status": "rejected", "event_ids": [], "field": error.field, "reason": error.reason},
    }  # fmt: skip


def stored_event_object(
    transaction_id: str,
    rows: list[Mapping[str, Any]],
    code_of: Mapping[str, str],
) -> dict[str, Any]:
    """The event object of `GET /events/{transaction_id}` from its rated rows (one per meter it fed).

    `rows` carry event_id, customer, subject, meter, time (datetime), dimensions; `code_of` maps a
    meter slug to the billable metric code (event type) that feeds it.
    """
    first = rows[0]
    dims = dict(first.get("dimensions") or {})
    precise = dims.pop(PRECISE_AMOUNT_KEY, None)
    dims.pop(UNIQUE_DIMENSION, None)
    meter = first["meter"]
    return _event(
        transaction_id,
        lago_id=first["event_id"],
        code=code_of.get(meter, meter),
        time=first["time"],
        properties=dims,
        precise=precise,
        subscription=first.get("subject") or first["customer"],
        customer=first["customer"],
        created_at=None,
        extension={"status": "rated", "event_ids": [r["event_id"] for r in rows], "meters": [r["meter"] for r in rows]},
    )


def kept_event_object(event: LagoEvent, status: str, reason: str, field: str | None = None) -> dict[str, Any]:
    """The event object of a transaction kept but not rated (unmatched, dead-lettered), from its raw event."""
    extension: dict[str, Any] = {"status": status, "event_ids": [], "reason": reason}
    if field is not None:
        extension["field"] = field
    return _event(
        event.transaction_id,
        lago_id=None,
        code=event.code,
        time=event.time,
        properties=event.properties,
        precise=event.precise_total_amount_cents,
        subscription=event.external_subscription_id or event.subject,
        customer=event.external_customer_id,
        created_at=None,
        extension=extension,
    )


def _event(
    transaction_id: str,
    *,
    lago_id: str | None,
    code: str,
    time: datetime,
    properties: Mapping[str, Any],
    precise: str | None,
    subscription: str,
    customer: str | None,
    created_at: str | None,
    extension: dict[str, Any],
) -> dict[str, Any]:
    return {
        "lago_id": lago_id,
        "transaction_id": transaction_id,
        "lago_customer_id": None,
        "code": code,
        "timestamp": format_time(time),
        "precise_total_amount_cents": precise,
        "properties": dict(properties),
        "lago_subscription_id": None,
        "external_subscription_id": subscription,
        "external_customer_id": customer,
        "created_at": created_at,
        "meterstream": extension,
    }


def metric_object(meter: Meter) -> dict[str, Any] | None:
    fields = billable_metric_fields(slug=meter.slug, event_type=meter.event_type, aggregation=meter.aggregation,
                                    value_property=meter.value_property)  # fmt: skip
    if fields is None:
        return None
    return {
        "lago_id": meter.id, "name": meter.name or meter.slug, "code": fields["code"],
        "description": meter.description, "recurring": False, "rounding_function": None,
        "rounding_precision": None, "created_at": format_time(meter.created_at), "expression": None,
        "field_name": fields["field_name"], "aggregation_type": fields["aggregation_type"],
        "weighted_interval": None, "filters": [], "meter": meter.slug,
    }  # fmt: skip


def empty_meta() -> dict[str, Any]:
    """Lago's pagination `meta` of an empty list: page 0 of 0 (lago-api's Pagination concern answers
    current_page 0, total_pages 0 when there is nothing to list, not page 1 of 1). Every Lago list uses it."""
    return {"current_page": 0, "next_page": None, "prev_page": None, "total_pages": 0, "total_count": 0}


def page_meta(count: int) -> dict[str, Any]:
    """The `meta` of a list answered whole (one page of `count`; none: `empty_meta`)."""
    if count == 0:
        return empty_meta()
    return {"current_page": 1, "next_page": None, "prev_page": None, "total_pages": 1, "total_count": count}


def page_of(items: list[Any], total: int, page: int, per_page: int) -> dict[str, Any]:
    """The `meta` of page `page` of `per_page` of `total` rows (Lago's paging)."""
    if total == 0:
        return empty_meta()  # page 0 of 0, as Lago
    pages = -(-total // per_page)
    return {"current_page": page, "next_page": page + 1 if page < pages else None,
            "prev_page": page - 1 if page > 1 else None, "total_pages": pages, "total_count": total}  # fmt: skip
