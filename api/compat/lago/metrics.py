"""Lago billable metrics <-> Meterstream meter definitions (pure).

A billable metric (code, name, aggregation_type, field_name) is a meter definition with
`event_type = code`, `slug = code` (the meter the pricing catalog prices) and `value_property =
$.<field_name>`. What has no meter-definition equivalent is refused with the field and the reason
rather than accepted and ignored: `weighted_sum_agg`, `custom_agg`, `expression`, `recurring: true`,
rounding and filters with values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from meterstream.schemas.event import InvalidEvent

SLUG_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,127}$")
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

TO_AGGREGATION = {
    "count_agg": "COUNT",
    "sum_agg": "SUM",
    "max_agg": "MAX",
    "unique_count_agg": "UNIQUE_COUNT",
    "latest_agg": "LATEST",
}
FROM_AGGREGATION = {v: k for k, v in TO_AGGREGATION.items()}
_NOT_YET = {
    "weighted_sum_agg": "weighted_sum_agg is not supported yet (no time-weighted meter aggregation)",
    "custom_agg": "custom_agg is not supported",
}


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """The meter definition a billable metric becomes (the fields of the shared meter definitions)."""

    slug: str
    event_type: str
    aggregation: str
    value_property: str | None
    name: str
    description: str | None = None
    group_by: dict[str, str] = field(default_factory=dict)


def meter_from_billable_metric(raw: Any) -> MeterSpec:
    """`billable_metric` body of `POST /api/v1/billable_metrics` to a meter definition, or InvalidEvent."""
    if not isinstance(raw, dict):
        raise InvalidEvent("billable_metric", "must be a JSON object")
    code = raw.get("code")
    if not isinstance(code, str) or not code:
        raise InvalidEvent("code", "required")
    if not SLUG_RE.match(code):
        raise InvalidEvent(
            "code", "must match ^[a-z][a-z0-9_.-]{0,127}$: it is the meter name the pricing catalog uses"
        )
    name = raw.get("name")
    if name is None:
        raise InvalidEvent("name", "required")
    if not isinstance(name, str) or not name.strip():
        raise InvalidEvent("name", "must be a non-empty string")
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidEvent("description", "must be a string")
    kind = raw.get("aggregation_type")
    if kind is None:
        raise InvalidEvent("aggregation_type", "required")
    if kind in _NOT_YET:
        raise InvalidEvent("aggregation_type", _NOT_YET[kind])
    if kind not in TO_AGGREGATION:
        raise InvalidEvent("aggregation_type", f"must be one of {', '.join(TO_AGGREGATION)}")
    field_name = raw.get("field_name")
    if kind == "count_agg":
        field_name = None  # Lago ignores field_name for count_agg
    elif not isinstance(field_name, str) or not field_name:
        raise InvalidEvent("field_name", f"required for {kind}")
    if raw.get("recurring"):
        raise InvalidEvent("recurring", "recurring billable metrics are not supported yet")
    if raw.get("expression"):
        raise InvalidEvent("expression", "expressions are not supported yet")
    if raw.get("rounding_function") is not None or raw.get("rounding_precision") is not None:
        raise InvalidEvent("rounding_function", "rounding is not supported yet")
    if raw.get("weighted_interval") is not None:
        raise InvalidEvent("weighted_interval", "only used by weighted_sum_agg, which is not supported yet")
    filters = raw.get("filters") or []
    if filters:
        raise InvalidEvent("filters", "filters are not supported yet (nor on plan charges)")
    return MeterSpec(
        slug=code,
        event_type=code,
        aggregation=TO_AGGREGATION[kind],
        value_property=json_path(field_name) if field_name else None,
        name=name,
        description=description,
    )


def billable_metric_fields(
    *, slug: str, event_type: str, aggregation: str, value_property: str | None
) -> dict[str, Any] | None:
    """The Lago fields of a meter definition, or None when Lago cannot represent it (AVG, MIN, ...)."""
    kind = FROM_AGGREGATION.get(aggregation.upper())
    if kind is None:
        return None
    field_name = field_name_of(value_property) if value_property else None
    if value_property and field_name is None:
        return None  # a JSONPath deeper than one property: no Lago field_name says that
    return {"code": event_type, "aggregation_type": kind, "field_name": field_name}


def json_path(field_name: str) -> str:
    """`$.field` for a plain name, `$['field name']` otherwise (quotes and backslashes escaped)."""
    if _PLAIN_NAME.match(field_name):
        return f"$.{field_name}"
    escaped = field_name.replace("\\", "\\\\").replace("'", "\\'")
    return f"$['{escaped}']"


def field_name_of(value_property: str) -> str | None:
    """The inverse of `json_path`: the property a one-level JSONPath names, else None."""
    if value_property.startswith("$.") and _PLAIN_NAME.match(value_property[2:]):
        return value_property[2:]
    m = re.fullmatch(r"\$\['((?:[^'\\]|\\.)*)'\]", value_property)
    if m:
        return re.sub(r"\\(.)", r"\1", m.group(1))
    return None
