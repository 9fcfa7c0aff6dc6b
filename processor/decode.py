"""Decode a polled batch of usage events at once, for the columnar path (processor/columnar.py).

`schemas.event.parse_event` stays the one specification of what is a valid event and of every error
message. This module only recognises the *plainly valid* common event, cheaply, and answers None for
anything else; the caller then runs the per-message specification (`step.process`, which calls
`parse_event`) on that message, so whatever is accepted, refused or reworded there applies here too.

What "plainly valid" means is a strict subset of what `parse_event` accepts, with margins:
- the same JSON decoder as `parse_event` (orjson), so both see the same document;
- only the schema's fields, the required ones present, each of the expected type;
- strings well under every length/byte limit: at most `_MAX_CHARS` characters (dimension keys and
  values: a quarter of their byte limits in characters, so within them whatever the UTF-8 length);
  dimension keys non-empty and without control characters;
- tenant and meter matching the schema's patterns (checked once per distinct value);
- quantity a string of at most `_MAX_INT_DIGITS` integer digits and at most the schema's fractional
  digits, or a JSON integer in [0, min(10**_MAX_INT_DIGITS, JSON_NUMBER_MAX)]; its value is `parse_event`'s own
  `parse_quantity` (memoised per distinct input), and anything it refuses goes the slow way;
- time already in the canonical form (`2026-11-01T12:00:00.000Z`), a real date in 1900-2299, and
  within the schema's `TimeWindow` around the message's receive time (its own `check`).
The result for an accepted event equals the model `parse_event` returns, field by field (the
differential test, tests/processor/test_columnar_differential.py, checks this on random input).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from meterstream.schemas.event import (
    DEFAULT_TIME_WINDOW,
    DIMENSION_KEY_MAX_BYTES,
    DIMENSION_VALUE_MAX_BYTES,
    DIMENSIONS_MAX,
    JSON_NUMBER_MAX,
    QUANTITY_MAX_INTEGER_DIGITS,
    QUANTITY_SCALE,
    TimeWindow,
    UsageEvent,
    parse_quantity,
)

_MAX_CHARS = 64  # 64 chars <= 256 UTF-8 bytes: under every string limit of the schema (ids: 256 chars)
_MAX_KEY_CHARS = min(_MAX_CHARS, DIMENSION_KEY_MAX_BYTES // 4)  # 4 UTF-8 bytes per character at most
_MAX_VALUE_CHARS = min(_MAX_CHARS, DIMENSION_VALUE_MAX_BYTES // 4)
_MAX_INT_DIGITS = min(18, QUANTITY_MAX_INTEGER_DIGITS)
_MAX_DIMENSIONS = min(16, DIMENSIONS_MAX)
_INT_LIMIT = min(10**_MAX_INT_DIGITS, JSON_NUMBER_MAX + 1)
_FIELDS = frozenset(UsageEvent.model_fields)
_REQUIRED = frozenset(name for name, f in UsageEvent.model_fields.items() if f.is_required())
assert _REQUIRED == {"id", "tenant", "customer", "meter", "time", "quantity"}, "check() reads these by name"
_has_only_fields = _FIELDS.issuperset
_TENANT_RE = re.compile(r"[^/\x00-\x1f]+")
_METER_RE = re.compile(r"[a-z][a-z0-9_.-]{0,127}")
_QUANTITY_RE = re.compile(rf"[0-9]{{1,{_MAX_INT_DIGITS}}}(\.[0-9]{{1,{QUANTITY_SCALE}}})?")
_TIME_RE = re.compile(r"(?:19|2[0-2])[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")  # 1900-2299
_CONTROL_RE = re.compile(r"[\x00-\x1f]")
_fromisoformat = datetime.fromisoformat
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_new_tuple = tuple.__new__  # builds a Fast without NamedTuple's Python-level __new__ (~0.8 us here)
_loads = orjson.loads
_CACHE_MAX = 200_000  # memo sizes: cleared when exceeded (values repeat: meters, tenants, quantities)


class Fast(NamedTuple):
    """One plainly valid event, as the columnar path needs it (equal to parse_event's model)."""

    id: str
    tenant: str
    customer: str
    subject: str | None
    meter: str
    quantity: Decimal
    quantity_text: str  # format(quantity, "f")
    time_text: str  # canonical RFC 3339, UTC, milliseconds
    dimensions: dict[str, str]
    source: str | None
    time: datetime


class Decoder:
    """Per-process memo of validated values; `decode` is pure otherwise."""

    def __init__(self, window: TimeWindow | None = DEFAULT_TIME_WINDOW) -> None:
        self.window = window
        self.dimension_keys: set[str] = set()  # dimension keys already checked
        self.bounds: dict[int, tuple[str, str]] = {}  # receive time -> the window as canonical texts
        self.tenants: set[str] = set()
        self.meters: set[str] = set()
        self.quantities: dict[Any, tuple[Decimal, str]] = {}

    def decode(self, values: list[bytes | None], received: list[int]) -> list[Fast | None]:
        """The batch's values, each a `Fast` event or None (take the per-message specification);
        `received` holds each message's receive time (epoch ms) the event's time is judged against."""
        one = self.one
        return [one(v, r) for v, r in zip(values, received, strict=True)]

    def one(self, raw: bytes | None, received_ms: int) -> Fast | None:
        if raw is None:
            return None
        try:
            data = _loads(raw)
        except orjson.JSONDecodeError:
            return None
        if type(data) is not dict:
            return None
        return self.check(data, received_ms)

    def check(self, data: dict[str, Any], received_ms: int) -> Fast | None:
        """An already decoded JSON object: a `Fast` event if plainly valid, else None (take the
        specification, `parse_event`); `received_ms` is the receive time (epoch ms) the window uses."""
        if not _has_only_fields(data):  # frozenset.issuperset(dict): C, over the keys
            return None
        try:  # the required fields (_REQUIRED)
            id_, tenant, customer, meter = data["id"], data["tenant"], data["customer"], data["meter"]
            t, q = data["time"], data["quantity"]
        except KeyError:
            return None
        if not (
            type(id_) is str
            and 0 < len(id_) <= _MAX_CHARS
            and type(customer) is str
            and 0 < len(customer) <= _MAX_CHARS
        ):
            return None
        if type(tenant) is not str or (tenant not in self.tenants and not self._tenant(tenant)):
            return None
        if type(meter) is not str or (meter not in self.meters and not self._meter(meter)):
            return None
        subject = data.get("subject")
        if subject is not None and (type(subject) is not str or len(subject) > _MAX_CHARS):
            return None
        source = data.get("source")
        if source is not None and (type(source) is not str or len(source) > _MAX_CHARS):
            return None
        dimensions = data.get("dimensions")
        if dimensions is None:
            if "dimensions" in data:
                return None
            dimensions = {}
        elif type(dimensions) is not dict or len(dimensions) > _MAX_DIMENSIONS:
            return None
        else:
            dimension_keys = self.dimension_keys
            for k, v in dimensions.items():
                if type(v) is not str or len(v) > _MAX_VALUE_CHARS:
                    return None
                if k not in dimension_keys:
                    if not k or len(k) > _MAX_KEY_CHARS or _CONTROL_RE.search(k):
                        return None
                    self._remember(dimension_keys, k)
        if type(t) is not str or len(t) != 24 or not _TIME_RE.fullmatch(t):
            return None
        try:
            when = _fromisoformat(t)  # a real date and time of day, UTC
        except ValueError:
            return None
        bounds = self.bounds.get(received_ms)
        if bounds is None:
            bounds = self._bounds(received_ms)
        if not bounds[0] <= t <= bounds[1]:
            return None
        known = self.quantities.get(q) if type(q) is str or type(q) is int else None
        if known is None:
            known = self._quantity(q)
            if known is None:
                return None
        fields = (id_, tenant, customer, subject, meter, known[0], known[1], t, dimensions, source, when)
        return _new_tuple(Fast, fields)

    def _bounds(self, received_ms: int) -> tuple[str, str]:
        """The time window around `received_ms` as the canonical texts of its ends: canonical times
        (fixed width, UTC, milliseconds) sort as the instants they name, so `lo <= t <= hi` is exactly
        `TimeWindow.check`'s test on the millisecond count, without parsing `t` into a number."""
        if self.window is None:
            bounds = ("", "~")  # no window: only the form and range of the time are checked
        else:
            bounds = (
                _canonical(received_ms - self.window.max_age_ms),
                _canonical(received_ms + self.window.max_future_ms),
            )
        if len(self.bounds) >= _CACHE_MAX:
            self.bounds.clear()
        self.bounds[received_ms] = bounds
        return bounds

    def _tenant(self, tenant: Any) -> bool:
        if type(tenant) is str and len(tenant) <= _MAX_CHARS and _TENANT_RE.fullmatch(tenant):
            self._remember(self.tenants, tenant)
            return True
        return False

    def _meter(self, meter: Any) -> bool:
        if type(meter) is str and _METER_RE.fullmatch(meter):
            self._remember(self.meters, meter)
            return True
        return False

    def _quantity(self, q: Any) -> tuple[Decimal, str] | None:
        if type(q) is int:
            if not 0 <= q < _INT_LIMIT:
                return None
        elif type(q) is not str or not _QUANTITY_RE.fullmatch(q):
            return None
        try:
            value = parse_quantity(q)  # the schema's own conversion
        except ValueError:
            return None
        known = (value, format(value, "f"))
        if len(self.quantities) >= _CACHE_MAX:
            self.quantities.clear()
        self.quantities[q] = known
        return known

    @staticmethod
    def _remember(memo: set[str], value: str) -> None:
        if len(memo) >= _CACHE_MAX:
            memo.clear()
        memo.add(value)


def _canonical(ms: int) -> str:
    """Epoch milliseconds as canonical text; "" / "~" (below / above every canonical time) out of range."""
    try:
        d = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return "" if ms < 0 else "~"
    if d.year < 1000:
        return ""
    return d.isoformat(timespec="milliseconds")[:23] + "Z"


__all__ = ["Decoder", "Fast"]
