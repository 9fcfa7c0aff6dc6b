"""Lago usage events, parsed and checked (pure): what `POST /api/v1/events` and `/events/batch` carry.

A Lago event names its billable metric by `code`, its idempotency key by `transaction_id`, who is charged
by `external_subscription_id` (and/or `external_customer_id`), when by `timestamp` (Unix seconds: an
integer, a float or a string with decimals; absent or null = the time of reception) and what by
`properties`. `precise_total_amount_cents` (Lago's dynamic pricing input) is kept, not priced.
Every refusal is an `InvalidEvent` naming the field and the reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from meterstream.schemas.event import InvalidEvent, format_time, parse_time

SOURCE = "lago"
"""The CloudEvents-style `source` of every Lago event: (source, transaction_id) is the identity."""
PRECISE_AMOUNT_KEY = "lago:precise_total_amount_cents"
"""Dimension that keeps `precise_total_amount_cents`; a property of that name is refused."""
MAX_TEXT = 256  # transaction ids, codes and subscription/customer ids: the usage event's id/customer limit
MAX_PROPERTIES = 62  # the usage event's 64 dimensions, less precise_total_amount_cents and `$unique`
MAX_KEY_BYTES = 128  # dimension keys and values as the usage event bounds them (UTF-8 bytes)
MAX_VALUE_BYTES = 1024
JSON_INT_MAX = 2**53 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
_UNIX_RE = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_AMOUNT_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


@dataclass(frozen=True, slots=True)
class LagoEvent:
    """One checked Lago event. `properties` is the raw JSON object; `dimensions` its string form."""

    transaction_id: str
    code: str
    external_subscription_id: str | None
    external_customer_id: str | None
    time: datetime  # UTC, milliseconds
    timestamp_given: bool  # False: the event had no timestamp and `time` is the reception time
    properties: dict[str, Any] = field(default_factory=dict)
    precise_total_amount_cents: str | None = None

    @property
    def time_text(self) -> str:
        return format_time(self.time)

    @property
    def subject(self) -> str:
        """Whom the usage is attributed to inside the customer: the subscription, else the customer."""
        return self.external_subscription_id or self.external_customer_id  # type: ignore[return-value]

    def dimensions(self) -> dict[str, str]:
        """Properties as usage-event dimensions (strings, as Lago's ClickHouse event store keeps them)."""
        dims = {k: _dimension_text(v) for k, v in self.properties.items() if v is not None}
        if self.precise_total_amount_cents is not None:
            dims[PRECISE_AMOUNT_KEY] = self.precise_total_amount_cents
        return dims


def parse_lago_event(raw: Any, now: datetime) -> LagoEvent:
    """A Lago event object (already JSON-decoded) to a `LagoEvent`, or `InvalidEvent(field, reason)`.

    `now` (UTC) is used when the event has no timestamp, as Lago does.
    """
    if not isinstance(raw, dict):
        raise InvalidEvent("$", "must be a JSON object")
    transaction_id = _text(raw, "transaction_id", required=True)
    code = _text(raw, "code", required=True)
    subscription = _text(raw, "external_subscription_id", required=False)
    customer = _text(raw, "external_customer_id", required=False)
    if subscription is None and customer is None:
        raise InvalidEvent("external_subscription_id", "required (or external_customer_id)")
    stamp = raw.get("timestamp")
    time = parse_timestamp(stamp) if stamp is not None else _truncate_ms(now.astimezone(UTC))
    properties = raw.get("properties")
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise InvalidEvent("properties", "must be a JSON object")
    _check_properties(properties)
    amount = parse_precise_amount(raw.get("precise_total_amount_cents"))
    return LagoEvent(
        transaction_id=transaction_id,
        code=code,
        external_subscription_id=subscription,
        external_customer_id=customer,
        time=time,
        timestamp_given=stamp is not None,
        properties=properties,
        precise_total_amount_cents=amount,
    )


def parse_timestamp(value: Any) -> datetime:
    """Unix seconds (integer, float or decimal string) or RFC 3339 text, to UTC truncated to milliseconds."""
    if isinstance(value, bool):
        raise InvalidEvent("timestamp", "must be Unix seconds (a number or a numeric string), not a boolean")
    if isinstance(value, int):
        seconds = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent("timestamp", "must be a finite number of Unix seconds")
        seconds = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if _UNIX_RE.match(text):
            seconds = Decimal(text)
        elif text[:1] == "-" and _UNIX_RE.match(text[1:]):
            raise InvalidEvent("timestamp", "must not be before 1970-01-01T00:00:00Z")
        else:
            try:
                return parse_time(text)
            except ValueError:
                raise InvalidEvent(
                    "timestamp", f'must be Unix seconds such as 1651240791 or "1651240791.123", got {value!r}'
                ) from None
    else:
        raise InvalidEvent("timestamp", "must be Unix seconds (a number or a numeric string)")
    if seconds < 0:
        raise InvalidEvent("timestamp", "must not be before 1970-01-01T00:00:00Z")
    whole = int(seconds)
    millis = int((seconds - whole) * 1000)  # truncated, like the usage event's time
    if whole > (_LATEST - _EPOCH).total_seconds():
        raise InvalidEvent("timestamp", "is after 9999-12-31T23:59:59Z")
    return _EPOCH + timedelta(seconds=whole, milliseconds=millis)


def parse_precise_amount(value: Any) -> str | None:
    """`precise_total_amount_cents`: a decimal (string or number) kept as exact text, or None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidEvent("precise_total_amount_cents", 'must be a decimal string such as "1234.56"')
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent("precise_total_amount_cents", "must be a finite decimal")
        return format(Decimal(repr(value)), "f")
    if isinstance(value, str) and _AMOUNT_RE.match(value.strip()):
        try:
            return format(Decimal(value.strip()), "f")
        except InvalidOperation:  # pragma: no cover - the regex already guards this
            pass
    raise InvalidEvent("precise_total_amount_cents", f'must be a decimal string such as "1234.56", got {value!r}')


def _text(raw: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = raw.get(name)
    if value is None:
        if required:
            raise InvalidEvent(name, "required")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidEvent(name, "must be a string")
    text = str(value)
    if not text.strip():
        if required:
            raise InvalidEvent(name, "must not be empty")
        return None
    if len(text) > MAX_TEXT:
        raise InvalidEvent(name, f"must be at most {MAX_TEXT} characters")
    if any(ord(c) < 0x20 for c in text):
        raise InvalidEvent(name, "must not contain control characters")
    return text


def _check_properties(properties: dict[str, Any]) -> None:
    if PRECISE_AMOUNT_KEY in properties:
        raise InvalidEvent(f"properties.{PRECISE_AMOUNT_KEY}", "is reserved for precise_total_amount_cents")
    kept = [k for k, v in properties.items() if v is not None]
    if len(kept) > MAX_PROPERTIES:
        raise InvalidEvent("properties", f"at most {MAX_PROPERTIES} properties (got {len(kept)})")
    for key in kept:
        value = properties[key]
        if not key or len(key.encode()) > MAX_KEY_BYTES or any(ord(c) < 0x20 for c in key):
            raise InvalidEvent(f"properties.{key}", f"names must be 1-{MAX_KEY_BYTES} bytes, no control characters")
        _check_numbers(value, f"properties.{key}")
        if len(_dimension_text(value).encode()) > MAX_VALUE_BYTES:
            raise InvalidEvent(f"properties.{key}", f"must be at most {MAX_VALUE_BYTES} bytes as text")


def _check_numbers(value: Any, path: str) -> None:
    """Numbers JSON carries exactly (I-JSON, RFC 7493): finite, integers within +-(2^53 - 1)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > JSON_INT_MAX:
            raise InvalidEvent(path, "an integer beyond 2^53 - 1 is not exact in JSON: send it as a string")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent(path, "must be a finite number")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_numbers(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_numbers(v, f"{path}[{i}]")


def _dimension_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _truncate_ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)
