"""The pydantic model and usage_event.v1.json accept and refuse the same events."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import jsonschema
import orjson
import pytest

from meterstream.schemas.event import InvalidEvent, parse_event

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "usage_event.v1.json").read_text())
VALID = {
    "id": "e-1",
    "tenant": "acme",
    "customer": "c-1",
    "meter": "api_calls",
    "quantity": "12.5",
    "time": "2026-10-03T10:00:00.250+02:00",
}


def _schema_ok(doc: dict) -> bool:
    try:
        jsonschema.validate(doc, SCHEMA, format_checker=jsonschema.FormatChecker())
        return True
    except jsonschema.ValidationError:
        return False


GOOD = [
    VALID,
    {**VALID, "quantity": 3},
    {**VALID, "quantity": 0.25},
    {**VALID, "subject": "+491701234567", "dimensions": {"destination": "+4930"}, "source": "gw"},
    {**VALID, "subject": None},
    {**VALID, "time": "2026-10-03T08:00:00Z"},
]
BAD = [
    ({k: v for k, v in VALID.items() if k != "id"}, "id", "required"),
    ({k: v for k, v in VALID.items() if k != "customer"}, "customer", "required"),
    ({**VALID, "quantity": "-1"}, "quantity", "must be >= 0"),
    ({**VALID, "quantity": "1e3"}, "quantity", "fractional digits"),
    ({**VALID, "quantity": "0.1234567890123"}, "quantity", "fractional digits"),
    ({**VALID, "time": "2026-10-03 10:00"}, "time", "RFC 3339"),
    ({**VALID, "time": "2026-10-03T10:00:00"}, "time", "RFC 3339"),
    ({**VALID, "meter": "API Calls"}, "meter", "pattern"),
    ({**VALID, "tenant": "a/b"}, "tenant", "pattern"),
    ({**VALID, "id": ""}, "id", "at least 1"),
    ({**VALID, "dimensions": {"x": 1}}, "dimensions.x", "string"),
    ({**VALID, "qty": 1}, "qty", "unknown field"),
]


@pytest.mark.parametrize("doc", GOOD)
def test_valid_events_pass_both(doc: dict) -> None:
    assert _schema_ok(doc)
    parse_event(orjson.dumps(doc))


@pytest.mark.parametrize(("doc", "field", "reason"), BAD)
def test_invalid_events_fail_both_naming_the_field(doc: dict, field: str, reason: str) -> None:
    assert not _schema_ok(doc)
    with pytest.raises(InvalidEvent) as err:
        parse_event(orjson.dumps(doc))
    assert err.value.field == field
    assert reason in err.value.reason


def test_exact_quantities_and_time_normalisation() -> None:
    e = parse_event(
        orjson.dumps({**VALID, "quantity": "0.000000000001", "time": "2026-10-03T10:00:00.123999+02:00"})
    )
    assert e.quantity == Decimal("0.000000000001")
    assert e.time.isoformat() == "2026-10-03T08:00:00.123000+00:00"
    assert parse_event(orjson.dumps({**VALID, "quantity": 0.1})).quantity == Decimal("0.1")
    assert e.key == b"acme/c-1"


def test_round_trip_is_canonical() -> None:
    e = parse_event(orjson.dumps({**VALID, "quantity": 7}))
    assert orjson.loads(e.to_json()) == {**VALID, "quantity": "7", "time": "2026-10-03T08:00:00.250Z"}
    assert parse_event(e.to_json()) == e


@pytest.mark.parametrize("raw", [b"{", b"[1]", b"null", b"\xff\xfe"])
def test_not_an_object(raw: bytes) -> None:
    with pytest.raises(InvalidEvent) as err:
        parse_event(raw)
    assert err.value.field == "$"
