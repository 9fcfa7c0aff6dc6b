"""Lago compatibility, pure parts: event checks, timestamps, billable metrics, translation, customers.

Expected values are worked out by hand: 1650000000 is 2022-04-15T05:20:00Z (a well-known Unix time),
so 2022-04-29T00:00:00Z is 1650000000 + 13 days 18 h 40 min = 1650000000 + 1,190,400 = 1651190400,
and Lago's example timestamp 1651240791 is 50,391 s (13 h 59 min 51 s) later: 2022-04-29T13:59:51Z.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meterstream.api.compat.lago.events import PRECISE_AMOUNT_KEY, parse_lago_event, parse_timestamp
from meterstream.api.compat.lago.metrics import (
    billable_metric_fields,
    field_name_of,
    json_path,
    meter_from_billable_metric,
)
from meterstream.api.compat.lago.translate import lago_field, resolve_customer, translate_lago
from meterstream.ingest.translate import MeterDefinition
from meterstream.schemas.event import InvalidEvent

NOW = datetime(2026, 11, 30, 10, 0, 0, 123456, tzinfo=UTC)


def lago(**over: object) -> dict:
    event = {
        "transaction_id": "tx-1",
        "external_subscription_id": "sub-1",
        "code": "storage",
        "timestamp": 1651240791,
        "properties": {"gb": 10, "region": "eu"},
    }
    event.update(over)
    return {k: v for k, v in event.items() if v is not ...}


def iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- timestamps -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (1651240791, "2022-04-29T13:59:51.000Z"),
        ("1651240791", "2022-04-29T13:59:51.000Z"),
        ("1651240791.123", "2022-04-29T13:59:51.123Z"),
        ("1651240791.1239", "2022-04-29T13:59:51.123Z"),  # truncated to milliseconds, as usage events are
        (1651240791.5, "2022-04-29T13:59:51.500Z"),
        (1651190400, "2022-04-29T00:00:00.000Z"),
        (0, "1970-01-01T00:00:00.000Z"),
        (86400, "1970-01-02T00:00:00.000Z"),
        ("2022-04-29T15:59:51.123+02:00", "2022-04-29T13:59:51.123Z"),  # RFC 3339 is accepted too
    ],
)
def test_timestamps(given: object, expected: str) -> None:
    assert iso(parse_timestamp(given)) == expected


@pytest.mark.parametrize("bad", [True, -1, "-5", "yesterday", "1651240791,5", float("nan"), {"s": 1}, 10**15])
def test_bad_timestamps_name_the_field(bad: object) -> None:
    with pytest.raises(InvalidEvent) as err:
        parse_timestamp(bad)
    assert err.value.field == "timestamp"


def test_missing_timestamp_is_the_reception_time_in_milliseconds() -> None:
    for event in (lago(timestamp=...), lago(timestamp=None)):  # the SDK sends null when none is given
        parsed = parse_lago_event(event, NOW)
        assert iso(parsed.time) == "2026-11-30T10:00:00.123Z"
        assert parsed.timestamp_given is False


# --- event checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "field", "reason_part"),
    [
        ({"transaction_id": ...}, "transaction_id", "required"),
        ({"transaction_id": ""}, "transaction_id", "empty"),
        ({"transaction_id": "x" * 257}, "transaction_id", "256"),
        ({"code": ...}, "code", "required"),
        ({"code": ["storage"]}, "code", "string"),
        ({"external_subscription_id": ...}, "external_subscription_id", "external_customer_id"),
        ({"properties": [1, 2]}, "properties", "object"),
        ({"properties": {"gb": float("inf")}}, "properties.gb", "finite"),
        ({"properties": {"n": 2**53}}, "properties.n", "2^53"),  # 9,007,199,254,740,992: not exact in JSON
        ({"properties": {"a": {"b": [1, -(2**63) - 1]}}}, "properties.a.b[1]", "string"),
        ({"properties": {"note": "x" * 1025}}, "properties.note", "1024"),
        ({"properties": {f"p{i}": i for i in range(63)}}, "properties", "62"),
        ({"properties": {PRECISE_AMOUNT_KEY: "1"}}, f"properties.{PRECISE_AMOUNT_KEY}", "reserved"),
        ({"precise_total_amount_cents": "12,50"}, "precise_total_amount_cents", "decimal"),
        ({"timestamp": "soon"}, "timestamp", "Unix seconds"),
    ],
)
def test_bad_events_name_the_field_and_reason(over: dict, field: str, reason_part: str) -> None:
    with pytest.raises(InvalidEvent) as err:
        parse_lago_event(lago(**over), NOW)
    assert err.value.field == field
    assert reason_part in err.value.reason


def test_not_an_object() -> None:
    with pytest.raises(InvalidEvent) as err:
        parse_lago_event(["tx-1"], NOW)
    assert err.value.field == "$"


def test_customer_alone_is_enough_and_null_properties_are_none() -> None:
    parsed = parse_lago_event(lago(external_subscription_id=None, external_customer_id="cust-9", properties=None), NOW)
    assert parsed.subject == "cust-9"
    assert parsed.properties == {}


def test_precise_amount_kept_exactly() -> None:
    assert parse_lago_event(lago(precise_total_amount_cents="1234.560"), NOW).precise_total_amount_cents == "1234.560"
    assert parse_lago_event(lago(precise_total_amount_cents=12.5), NOW).precise_total_amount_cents == "12.5"
    assert parse_lago_event(lago(precise_total_amount_cents=None), NOW).precise_total_amount_cents is None


def test_dimensions_are_the_properties_as_text() -> None:
    parsed = parse_lago_event(
        lago(
            properties={"gb": 10, "ratio": 0.1, "ok": True, "tags": {"b": 1, "a": [2]}, "gone": None},
            precise_total_amount_cents="99.5",
        ),
        NOW,
    )
    assert parsed.dimensions() == {
        "gb": "10",
        "ratio": "0.1",
        "ok": "true",
        "tags": '{"a":[2],"b":1}',
        PRECISE_AMOUNT_KEY: "99.5",
    }


# --- customers --------------------------------------------------------------------------------------


def test_customer_resolution_order() -> None:
    recorded = {"sub-1": "acme"}
    assert resolve_customer(parse_lago_event(lago(), NOW), recorded) == "acme"  # the recorded subscription
    assert resolve_customer(parse_lago_event(lago(), NOW), {}) == "sub-1"  # else the subscription id itself
    named = parse_lago_event(lago(external_customer_id="acme"), NOW)
    assert resolve_customer(named, recorded) == "acme"  # named and consistent
    assert resolve_customer(parse_lago_event(lago(external_customer_id="other"), NOW), {}) == "other"
    with pytest.raises(InvalidEvent) as err:
        resolve_customer(parse_lago_event(lago(external_customer_id="other"), NOW), recorded)
    assert err.value.field == "external_customer_id"
    assert "acme" in err.value.reason


# --- billable metrics -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "aggregation", "value_property"),
    [
        ({"code": "storage", "name": "Storage", "aggregation_type": "sum_agg", "field_name": "gb"}, "SUM", "$.gb"),
        ({"code": "api_calls", "name": "Calls", "aggregation_type": "count_agg", "field_name": "x"}, "COUNT", None),
        (
            {"code": "seats", "name": "Seats", "aggregation_type": "unique_count_agg", "field_name": "user"},
            "UNIQUE_COUNT",
            "$.user",
        ),
        (
            {"code": "cpu", "name": "CPU", "aggregation_type": "max_agg", "field_name": "cpu load"},
            "MAX",
            "$['cpu load']",
        ),
        (
            {"code": "plan.tier", "name": "Tier", "aggregation_type": "latest_agg", "field_name": "tier"},
            "LATEST",
            "$.tier",
        ),
    ],
)
def test_billable_metric_to_meter(body: dict, aggregation: str, value_property: str | None) -> None:
    spec = meter_from_billable_metric(body)
    assert (spec.slug, spec.event_type) == (body["code"], body["code"])
    assert spec.aggregation == aggregation
    assert spec.value_property == value_property
    assert spec.name == body["name"]
    back = billable_metric_fields(
        slug=spec.slug, event_type=spec.event_type, aggregation=spec.aggregation, value_property=spec.value_property
    )
    assert back == {
        "code": body["code"],
        "aggregation_type": body["aggregation_type"],
        "field_name": None if aggregation == "COUNT" else body["field_name"],
    }


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"code": "Storage GB"}, "code"),
        ({"code": None}, "code"),
        ({"name": None}, "name"),
        ({"aggregation_type": "weighted_sum_agg"}, "aggregation_type"),
        ({"aggregation_type": "avg_agg"}, "aggregation_type"),
        ({"field_name": None}, "field_name"),
        ({"recurring": True}, "recurring"),
        ({"expression": "a * b"}, "expression"),
        ({"filters": [{"key": "region", "values": ["eu"]}]}, "filters"),
    ],
)
def test_billable_metric_refusals(over: dict, field: str) -> None:
    body = {"code": "storage", "name": "Storage", "aggregation_type": "sum_agg", "field_name": "gb", **over}
    with pytest.raises(InvalidEvent) as err:
        meter_from_billable_metric(body)
    assert err.value.field == field


def test_json_path_round_trip_and_unrepresentable_meters() -> None:
    for name in ("gb", "total_tokens", "with space", "it's", "back\\slash", "dotted.name"):
        assert field_name_of(json_path(name)) == name
    assert json_path("dotted.name") == "$['dotted.name']"
    assert field_name_of("$.a.b") is None
    assert billable_metric_fields(slug="m", event_type="m", aggregation="AVG", value_property="$.x") is None
    assert billable_metric_fields(slug="m", event_type="m", aggregation="SUM", value_property="$.a.b") is None


# --- translation --------------------------------------------------------------------------------------

STORAGE = MeterDefinition(slug="storage", event_type="storage", aggregation="SUM", value_property="$.gb")
CALLS = MeterDefinition(slug="api_calls", event_type="api_call", aggregation="COUNT")
REQUESTS = MeterDefinition(slug="requests", event_type="api_call", aggregation="COUNT")


def test_translation_of_a_sum_event() -> None:
    event = parse_lago_event(lago(precise_total_amount_cents="250"), NOW)
    out = translate_lago(event, [STORAGE, CALLS], "acme", NOW)
    assert not out.unmatched and not out.errors
    assert out.usage == [
        {
            "id": "om:storage:4:lago:tx-1",  # (source "lago" is 4 characters long, then the transaction id)
            "customer": "acme",
            "subject": "sub-1",
            "meter": "storage",
            "quantity": "10",
            "time": "2022-04-29T13:59:51.000Z",
            "source": "lago",
            "dimensions": {"gb": "10", "region": "eu", PRECISE_AMOUNT_KEY: "250"},
            "origin": {"key": "4:lago:tx-1", "kind": "storage"},  # the transaction id and its code
        }
    ]


def test_one_code_feeding_two_meters_gives_two_events_with_their_own_ids() -> None:
    event = parse_lago_event(lago(code="api_call", properties=None), NOW)
    out = translate_lago(event, [STORAGE, CALLS, REQUESTS], "sub-1", NOW)
    assert [(u["id"], u["meter"], u["quantity"]) for u in out.usage] == [
        ("om:api_calls:4:lago:tx-1", "api_calls", "1"),
        ("om:requests:4:lago:tx-1", "requests", "1"),
    ]
    assert all("dimensions" not in u for u in out.usage)


def test_same_transaction_id_same_usage_ids() -> None:
    a = translate_lago(parse_lago_event(lago(), NOW), [STORAGE], "acme", NOW)
    b = translate_lago(parse_lago_event(lago(properties={"gb": 99}), NOW), [STORAGE], "acme", NOW)
    assert [u["id"] for u in a.usage] == [u["id"] for u in b.usage]


def test_unknown_code_is_unmatched_not_dropped() -> None:
    out = translate_lago(parse_lago_event(lago(code="nobody_defined_this"), NOW), [STORAGE, CALLS], "acme", NOW)
    assert out.unmatched is True
    assert out.usage == [] and out.errors == []


def test_bad_value_property_names_the_lago_field() -> None:
    """A value that is there but not a quantity is refused; a missing one is not (test_compat_lago_missing_field)."""
    negative = translate_lago(parse_lago_event(lago(properties={"gb": -3}), NOW), [STORAGE], "acme", NOW)
    assert [e.field for e in negative.errors] == ["properties.gb"]
    assert ">= 0" in negative.errors[0].reason
    assert negative.usage == []


def test_lago_field_names() -> None:
    assert lago_field("data.gb") == "properties.gb"
    assert lago_field("data['cpu load']") == "properties['cpu load']"
    assert lago_field("dimensions.region") == "properties.region"
    assert lago_field("time") == "timestamp"
    assert lago_field("id") == "transaction_id"
    assert lago_field("customer") == "external_subscription_id"
