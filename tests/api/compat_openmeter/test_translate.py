"""ingest/translate.py: CloudEvents onto usage events through meter definitions (pure; hand-written expectations)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from meterstream.ingest.translate import (
    UNIQUE_DIMENSION,
    MeterDefinition,
    check_meter,
    derived_id,
    parse_derived_id,
    translate,
)
from meterstream.schemas.event import InvalidEvent

TOKENS = MeterDefinition(
    slug="tokens",
    event_type="prompt",
    aggregation="SUM",
    value_property="$.tokens",
    group_by={"model": "$.model", "tier": "$.meta.tier"},
)
PROMPTS = MeterDefinition(slug="prompts", event_type="prompt", aggregation="COUNT")
USERS = MeterDefinition(slug="users", event_type="prompt", aggregation="UNIQUE_COUNT", value_property="$.user")
OTHER = MeterDefinition(slug="gb", event_type="storage", aggregation="MAX", value_property="$['size gb']")


def cloud_event(**over):
    ev = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "svc-a",
        "type": "prompt",
        "subject": "user-7",
        "time": "2026-11-03T10:15:30.123456+01:00",
        "data": {"tokens": 1234, "model": "gpt-4", "meta": {"tier": 2}, "user": "u@x"},
    }
    ev.update(over)
    return ev


def test_one_event_feeds_every_meter_of_its_type():
    out = translate(cloud_event(), [TOKENS, PROMPTS, USERS, OTHER], {"user-7": "acme"})
    assert out.unmatched is False and out.envelope_error is None and out.errors == []
    by_meter = {e["meter"]: e for e in out.events}
    assert sorted(by_meter) == ["prompts", "tokens", "users"]
    tokens = by_meter["tokens"]
    # 10:15:30.123456+01:00 is 09:15:30.123 UTC (milliseconds kept, the rest truncated)
    assert tokens == {
        "id": "om:tokens:5:svc-a:e-1",
        "customer": "acme",  # the customer whose usage attribution lists user-7
        "subject": "user-7",
        "meter": "tokens",
        "quantity": "1234",
        "time": "2026-11-03T09:15:30.123Z",
        "source": "svc-a",
        "dimensions": {"model": "gpt-4", "tier": "2"},  # a number is kept as its JSON text
        # the CloudEvent it came from: (source, id) and its type (a resend with another type is a duplicate)
        "origin": {"key": "5:svc-a:e-1", "kind": "prompt"},
    }
    assert by_meter["prompts"]["quantity"] == "1" and "dimensions" not in by_meter["prompts"]
    assert by_meter["users"]["quantity"] == "1"
    assert by_meter["users"]["dimensions"] == {UNIQUE_DIMENSION: "u@x"}


def test_subject_without_customer_is_its_own_customer():
    (ev,) = translate(cloud_event(), [PROMPTS]).events
    assert ev["customer"] == "user-7"


def test_no_meter_for_the_type_is_unmatched():
    out = translate(cloud_event(type="unknown"), [TOKENS, OTHER])
    assert out.unmatched is True and out.outcomes == ()


@pytest.mark.parametrize(
    ("over", "field", "reason_part"),
    [
        ({"id": None}, "id", "required"),
        ({"id": ""}, "id", "must not be empty"),
        ({"source": 5}, "source", "must be a string"),
        ({"subject": None}, "subject", "required"),
        ({"specversion": "0.3"}, "specversion", "1.0"),
        ({"time": "2026-11-03 10:00"}, "time", "RFC 3339"),
        ({"time": "2026-11-03T10:00:00"}, "time", "offset"),
        ({"datacontenttype": "text/xml"}, "datacontenttype", "application/json"),
        ({"source": "s" * 257}, "source", "at most 256"),
    ],
)
def test_malformed_envelope_names_the_field(over, field, reason_part):
    out = translate(cloud_event(**over), [TOKENS])
    assert out.envelope_error is not None
    assert out.envelope_error.field == field
    assert reason_part in out.envelope_error.reason


def test_not_an_object():
    out = translate(["x"], [TOKENS])
    assert out.envelope_error is not None and out.envelope_error.field == "$"


def test_missing_time_is_now():
    now = datetime(2026, 11, 5, 8, 0, 0, 987654, tzinfo=UTC)
    (ev,) = translate(cloud_event(time=None), [PROMPTS], now=now).events
    assert ev["time"] == "2026-11-05T08:00:00.987Z"


@pytest.mark.parametrize(
    ("data", "field", "reason_part"),
    [
        ({"model": "x"}, "data.tokens", "required by meter tokens"),
        ({"tokens": None}, "data.tokens", "required by meter tokens"),
        ({"tokens": -3}, "data.tokens", ">= 0"),
        ({"tokens": "12 tokens"}, "data.tokens", "non-negative decimal"),
        ({"tokens": True}, "data.tokens", "boolean"),
        ({"tokens": "0.0000000000001"}, "data.tokens", "12 fractional digits"),
        ({"tokens": 1e20}, "data.tokens", "decimal string"),  # above 2^53: not exact as a JSON number
    ],
)
def test_bad_values_are_errors_naming_the_data_path(data, field, reason_part):
    out = translate(cloud_event(data=data), [TOKENS])
    (err,) = out.errors
    assert isinstance(err, InvalidEvent)
    assert err.field == field
    assert reason_part in err.reason


def test_one_meter_failing_does_not_stop_the_others():
    out = translate(cloud_event(data={"model": "m"}), [TOKENS, PROMPTS])
    assert [e["meter"] for e in out.events] == ["prompts"]
    assert [e.field for e in out.errors] == ["data.tokens"]


@pytest.mark.parametrize(
    ("value", "quantity"),
    [
        (12, "12"),
        (0.25, "0.25"),
        (2.5e-3, "0.0025"),  # a float goes through its shortest repr, never binary noise
        ("7.125", "7.125"),
        (" 8 ", "8"),
        (Decimal("3.000000000001"), "3.000000000001"),
    ],
)
def test_values_become_exact_quantities(value, quantity):
    (ev,) = translate(cloud_event(data={"tokens": value}), [TOKENS]).events
    assert ev["quantity"] == quantity


def test_missing_group_by_value_is_left_out():
    (ev,) = translate(cloud_event(data={"tokens": 1}), [TOKENS]).events
    assert "dimensions" not in ev


def test_bracket_and_nested_paths_and_jsonpath_ng_fallback():
    ev_data = {"size gb": "2.5", "items": [{"n": 4}, {"n": 9}]}
    storage = cloud_event(type="storage", data=ev_data)
    (ev,) = translate(storage, [OTHER]).events
    assert ev["quantity"] == "2.5"
    first_item = MeterDefinition(slug="n", event_type="storage", aggregation="LATEST", value_property="$.items[1].n")
    (ev,) = translate(storage, [first_item]).events
    assert ev["quantity"] == "9"


def test_event_from_skips_older_events():
    later = MeterDefinition(
        slug="prompts", event_type="prompt", aggregation="COUNT", event_from=datetime(2026, 12, 1, tzinfo=UTC)
    )
    out = translate(cloud_event(), [later])
    assert out.unmatched is False and out.outcomes == ()


def test_repeated_source_and_id_map_to_the_same_ids():
    a = translate(cloud_event(data={"tokens": 1}), [TOKENS, PROMPTS]).events
    b = translate(cloud_event(data={"tokens": 99}, time="2026-11-04T00:00:00Z"), [TOKENS, PROMPTS]).events
    assert [e["id"] for e in a] == [e["id"] for e in b]
    c = translate(cloud_event(source="svc-b"), [TOKENS]).events
    assert c[0]["id"] != a[0]["id"]


def test_derived_ids_are_unambiguous_and_bounded():
    # same concatenation, different split between source and id
    assert derived_id("a:b", "c", "m") != derived_id("a", "b:c", "m")
    assert parse_derived_id(derived_id("a:b", "c", "m")) == ("m", "a:b", "c")
    assert parse_derived_id(derived_id("a", "b:c", "m")) == ("m", "a", "b:c")
    long = derived_id("s" * 200, "i" * 100, "tokens")
    assert len(long) == len("om:tokens:h:") + 64
    assert long.startswith("om:tokens:h:")
    assert parse_derived_id(long) is None
    assert derived_id("s" * 200, "i" * 100, "tokens") == long
    assert derived_id("s" * 200, "i" * 101, "tokens") != long


@pytest.mark.parametrize(
    ("meter", "field"),
    [
        (MeterDefinition(slug="Tokens", event_type="t", aggregation="SUM", value_property="$.a"), "slug"),
        (MeterDefinition(slug="t", event_type="", aggregation="SUM", value_property="$.a"), "eventType"),
        (MeterDefinition(slug="t", event_type="t", aggregation="MEDIAN", value_property="$.a"), "aggregation"),
        (MeterDefinition(slug="t", event_type="t", aggregation="SUM"), "valueProperty"),
        (MeterDefinition(slug="t", event_type="t", aggregation="SUM", value_property="tokens"), "valueProperty"),
        (MeterDefinition(slug="t", event_type="t", aggregation="SUM", value_property="$.[[["), "valueProperty"),
        (MeterDefinition(slug="t", event_type="t", aggregation="COUNT", group_by={"$x": "$.a"}), "groupBy.$x"),
        (MeterDefinition("t", "t", "COUNT", group_by={"subject": "$.a"}), "groupBy.subject"),
    ],
)
def test_check_meter_names_the_field(meter, field):
    err = check_meter(meter)
    assert err is not None and err.field == field


def test_check_meter_accepts_valid():
    assert check_meter(TOKENS) is None and check_meter(PROMPTS) is None and check_meter(OTHER) is None


def test_events_list_rebuilds_what_the_meters_kept():
    from meterstream.api.compat.openmeter.service import _rebuild

    data: dict = {}
    _rebuild(data, MeterDefinition("t", "x", "SUM", "$.usage.tokens", {"model": "$.meta['model name']"}), "12.5",
             {"model": "gpt"})  # fmt: skip
    _rebuild(data, MeterDefinition("u", "x", "UNIQUE_COUNT", "$.user"), "1", {UNIQUE_DIMENSION: "u@x"})
    _rebuild(data, MeterDefinition("c", "x", "COUNT"), "1", {})
    _rebuild(data, MeterDefinition("n", "x", "MAX", "$.items[0].n"), "4", {})  # not a simple path: skipped
    assert data == {"usage": {"tokens": 12.5}, "meta": {"model name": "gpt"}, "user": "u@x"}


def test_events_list_times_parse_only_with_an_offset():
    from meterstream.api.compat.openmeter.service import _parse

    assert _parse("2026-12-01T03:30:00Z") == datetime(2026, 12, 1, 3, 30, tzinfo=UTC)
    assert _parse("2026-12-01T03:30:00") is None  # a refused event's naive time: never compared with aware ones
    assert _parse("yesterday") is None and _parse(None) is None
