"""Decode a polled batch of usage events at once, for the columnar path (processor/columnar.py).

`schemas.event.parse_event` stays the one specification of what is a valid event and of every error
message. This module only recognises the *plainly valid* common event, cheaply, and answers None for
anything else; the caller then runs the per-message specification (`step.process`, which calls
`parse_event`) on that message, so whatever is accepted, refused or reworded there applies here too.

What "plainly valid" means is a strict subset of what `parse_event` accepts, with margins:
- a JSON object that msgspec decodes into `_Wire` (C: the schema's fields only, the required ones
  present, each of the expected type and length), reading the document as `parse_event`'s orjson
  does where both accept it (tests/processor/test_decode.py compares them on hostile JSON);
- strings well under every length/byte limit: at most `_MAX_CHARS` characters (dimension keys and
  values: a quarter of their byte limits in characters, so within them whatever the UTF-8 length);
  dimension keys non-empty and without control characters (checked once per distinct key);
- tenant and meter matching the schema's patterns (checked once per distinct value);
- quantity a string of at most `_MAX_INT_DIGITS` integer digits and at most the schema's fractional
  digits, or a JSON integer in [0, min(10**_MAX_INT_DIGITS, JSON_NUMBER_MAX)]; its value is `parse_event`'s own
  `parse_quantity` (memoised per distinct input), and anything it refuses goes the slow way;
- time already in the canonical form (`2026-11-01T12:00:00.000Z`), a real date in 1900-2299 (checked
  once per distinct day) and a real time of day (looked up among all valid texts; the batch loop looks up
  the day and hour `YYYY-MM-DDTHH` in a memo of those that passed both checks, then `:MM:SS` and `.mmmZ`), and
  within the schema's `TimeWindow` around the message's receive time (its own `check`; the batch loop
  first tries the window common to the whole batch, from its oldest and newest receive times).
The result for an accepted event equals the model `parse_event` returns, field by field (the
differential test, tests/processor/test_columnar_differential.py, checks this on random input).
`Decoder.check` does the same for an object already decoded (the API's ingest path).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from msgspec import Meta

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
# a telecom session record (`session`) is not plainly valid: the specification rates it (processor/sessions.py)
_FIELDS = frozenset(UsageEvent.model_fields) - {"session"}
_REQUIRED = frozenset(name for name, f in UsageEvent.model_fields.items() if f.is_required())
assert _REQUIRED == {"id", "tenant", "customer", "meter", "time", "quantity"}, "check() reads these by name"
_has_only_fields = _FIELDS.issuperset
_TENANT_RE = re.compile(r"[^/\x00-\x1f]+")
_METER_RE = re.compile(r"[a-z][a-z0-9_.-]{0,127}")
_QUANTITY_RE = re.compile(rf"[0-9]{{1,{_MAX_INT_DIGITS}}}(\.[0-9]{{1,{QUANTITY_SCALE}}})?")
# the canonical time `YYYY-MM-DDTHH:MM:SS.mmmZ` in parts: the day, memoised (1900-2299; a real date as
# date.fromisoformat says), and the time of day as what datetime.fromisoformat accepts (no hour 24, no
# second 60), looked up in the sets of every valid text of each part
_DAY_RE = re.compile(r"(?:19|2[0-2])[0-9]{2}-[0-9]{2}-[0-9]{2}T")
_HOURS_MINUTES = frozenset(f"{h:02d}:{m:02d}" for h in range(24) for m in range(60))
_SECONDS = frozenset(f":{s:02d}" for s in range(60))
_FRACTIONS = frozenset(f".{ms:03d}Z" for ms in range(1000))
_MINUTES_SECONDS = frozenset(f":{m:02d}:{s:02d}" for m in range(60) for s in range(60))
_CONTROL_RE = re.compile(r"[\x00-\x1f]")
_date_fromisoformat = date.fromisoformat
_fromisoformat = datetime.fromisoformat
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CACHE_MAX = 200_000  # memo sizes: cleared when exceeded (values repeat: meters, tenants, quantities)
_MEMO_DIGITS = 6  # whole-number quantities of more digits are converted each time, not memoised


class Fast(msgspec.Struct, gc=False):
    """One plainly valid event, as the columnar path needs it (equal to parse_event's model; its time
    is kept as the canonical text, and `time` parses it only when asked for).

    A msgspec Struct without garbage-collector tracking (its fields are strings, a Decimal and a dict of
    strings: it can be part of no reference cycle): one per event lives through its batch, and as a tracked
    tuple each was traversed by every young collection meanwhile; built and read in C, faster than a tuple."""

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
    origin: tuple[str, str] | None = None  # the model's origin as (key, kind)

    @property
    def time(self) -> datetime:
        """The model's `time` (UTC), parsed from the canonical text when asked for (telecom rating)."""
        return _fromisoformat(self.time_text)


_Id = Annotated[str, Meta(min_length=1, max_length=_MAX_CHARS)]
_Text = Annotated[str, Meta(max_length=_MAX_CHARS)]
_Key = Annotated[str, Meta(min_length=1, max_length=_MAX_KEY_CHARS)]
_Value = Annotated[str, Meta(max_length=_MAX_VALUE_CHARS)]
_Dimensions = Annotated[dict[_Key, _Value], Meta(max_length=_MAX_DIMENSIONS)]


class _OriginWire(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    key: _Id
    kind: _Id


class _Wire(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The plainly valid event's JSON shape, checked by msgspec's decoder (C): the schema's fields only,
    the required ones present, each of its type and within this module's length margins. msgspec reads
    JSON as orjson does where it accepts a document (UTF-8 checked, lone surrogates refused, the last of
    duplicate keys wins, nothing after the value); where it refuses, the specification decides."""

    id: _Id
    tenant: _Id
    customer: _Id
    meter: str
    quantity: str | Annotated[int, Meta(ge=0, lt=_INT_LIMIT)]
    time: Annotated[str, Meta(min_length=24, max_length=24)]
    subject: _Text | None = None
    source: _Text | None = None
    dimensions: _Dimensions = {}
    origin: _OriginWire | None = None


assert frozenset(_Wire.__struct_fields__) == _FIELDS, "the wire struct must name exactly the schema's fields"
_decode_wire = msgspec.json.Decoder(_Wire).decode
_WireError = msgspec.DecodeError  # a ValidationError is one too


class Decoder:
    """Per-process memo of validated values; `decode` is pure otherwise."""

    def __init__(self, window: TimeWindow | None = DEFAULT_TIME_WINDOW) -> None:
        self.window = window
        self.dimension_keys: set[str] = set()  # dimension keys already checked
        self.bounds: dict[int, tuple[str, str]] = {}  # receive time -> the window as canonical texts
        self.tenants: set[str] = set()
        self.meters: set[str] = set()
        self.quantities: dict[Any, tuple[Decimal, str]] = {}
        self.days: set[str] = set()  # "YYYY-MM-DDT" of real dates in 1900-2299
        self.hours: set[str] = set()  # "YYYY-MM-DDTHH": a day of `days` and an hour 00-23

    def decode(self, values: list[bytes | None], received: list[int]) -> list[Fast | None]:
        """The batch's values, each a `Fast` event or None (take the per-message specification);
        `received` holds each message's receive time (epoch ms) the event's time is judged against."""
        out: list[Fast | None] = []
        add, accept, decode_wire, new, quantity = out.append, self._accept, _decode_wire, Fast, self._quantity
        # `_accept`'s checks inline where every memo answers (the common event): the same tests, so the same
        # answer; any miss or refusal goes through `_accept`, which checks in full (and memoises)
        tenants, meters, keys, hours, quantities = (
            self.tenants,
            self.meters,
            self.dimension_keys,
            self.hours,
            self.quantities,
        )  # cleared in place when full, never replaced: these stay the memos
        minutes_seconds, fractions = _MINUTES_SECONDS, _FRACTIONS
        # the window common to every message of the batch: from the newest receive time's lower end to the
        # oldest's upper end (canonical texts sort as instants); a time outside it is judged by `_accept`
        # against its own message's window
        lo, hi = self._common_window(received)
        for raw, received_ms in zip(values, received, strict=True):
            if raw is None:
                add(None)
                continue
            try:
                w = decode_wire(raw)
            except _WireError:
                add(None)
                continue
            tenant, meter, t, q, dims = w.tenant, w.meter, w.time, w.quantity, w.dimensions
            o = w.origin
            if o is not None:  # a derived event (compatibility layers): its origin as (key, kind)
                add(accept(w.id, tenant, w.customer, w.subject, meter, q, t, dims, w.source, received_ms,
                           (o.key, o.kind)))  # fmt: skip
                continue
            if (
                tenant in tenants
                and meter in meters
                and (not dims or keys.issuperset(dims))
                and t[:13] in hours  # the day and the hour (`_accept`'s day and t[11:13] of its t[11:16] test)
                and t[13:19] in minutes_seconds  # its t[13:16] and t[16:19] tests
                and t[19:] in fractions
                and lo <= t <= hi
                and (known := quantities.get(q) or quantity(q)) is not None
            ):
                add(new(w.id, tenant, w.customer, w.subject, meter, known[0], known[1], t, dims, w.source))
            else:
                add(accept(w.id, tenant, w.customer, w.subject, meter, q, t, dims, w.source, received_ms))
        return out

    def _common_window(self, received: list[int]) -> tuple[str, str]:
        """The canonical texts (lo, hi) between which a time lies in the window of every receive time of
        `received`; ("~", "") (no time) when `received` is empty."""
        if not received:
            return "~", ""
        newest, oldest = max(received), min(received)
        lo = (self.bounds.get(newest) or self._bounds(newest))[0]
        hi = (self.bounds.get(oldest) or self._bounds(oldest))[1]
        return lo, hi

    def one(self, raw: bytes | None, received_ms: int) -> Fast | None:
        return self.decode([raw], [received_ms])[0]

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
            and type(tenant) is str
            and 0 < len(tenant) <= _MAX_CHARS
            and type(meter) is str
            and type(t) is str
            and len(t) == 24
        ):
            return None
        if type(q) is not str and type(q) is not int:
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
            for k, v in dimensions.items():
                if type(v) is not str or len(v) > _MAX_VALUE_CHARS or not k or len(k) > _MAX_KEY_CHARS:
                    return None
        origin = None
        if "origin" in data:
            o = data["origin"]
            if type(o) is not dict or len(o) != 2:
                return None
            key, kind = o.get("key"), o.get("kind")
            if not (
                type(key) is str and 0 < len(key) <= _MAX_CHARS and type(kind) is str and 0 < len(kind) <= _MAX_CHARS
            ):
                return None
            origin = (key, kind)
        return self._accept(id_, tenant, customer, subject, meter, q, t, dimensions, source, received_ms, origin)

    def _accept(
        self,
        id_: str,
        tenant: str,
        customer: str,
        subject: str | None,
        meter: str,
        q: str | int,
        t: str,
        dimensions: dict[str, str],
        source: str | None,
        received_ms: int,
        origin: tuple[str, str] | None = None,
    ) -> Fast | None:
        """The checks left once every field has its type and length (as `_Wire` states them): patterns,
        dimension keys, the time's form, date and window, the quantity's digits; each memoised."""
        if tenant not in self.tenants and not self._tenant(tenant):
            return None
        if meter not in self.meters and not self._meter(meter):
            return None
        if dimensions and not self.dimension_keys.issuperset(dimensions) and not self._dimension_keys(dimensions):
            return None
        # the canonical form, a real date in 1900-2299 and a real time of day (what fromisoformat accepts)
        if t[:11] not in self.days and not self._day(t[:11]):
            return None
        if t[11:16] not in _HOURS_MINUTES or t[16:19] not in _SECONDS or t[19:] not in _FRACTIONS:
            return None
        if t[:13] not in self.hours:
            self._remember(self.hours, t[:13])
        bounds = self.bounds.get(received_ms)
        if bounds is None:
            bounds = self._bounds(received_ms)
        if not bounds[0] <= t <= bounds[1]:
            return None
        known = self.quantities.get(q)
        if known is None:
            known = self._quantity(q)
            if known is None:
                return None
        return Fast(id_, tenant, customer, subject, meter, known[0], known[1], t, dimensions, source, origin)

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

    def _tenant(self, tenant: str) -> bool:
        if len(tenant) <= _MAX_CHARS and _TENANT_RE.fullmatch(tenant):
            self._remember(self.tenants, tenant)
            return True
        return False

    def _meter(self, meter: str) -> bool:
        if _METER_RE.fullmatch(meter):
            self._remember(self.meters, meter)
            return True
        return False

    def _dimension_keys(self, dimensions: dict[str, str]) -> bool:
        for k in dimensions:
            if k not in self.dimension_keys:
                if not k or len(k) > _MAX_KEY_CHARS or _CONTROL_RE.search(k):
                    return False
                self._remember(self.dimension_keys, k)
        return True

    def _day(self, day: str) -> bool:
        if not _DAY_RE.fullmatch(day):
            return False
        try:
            _date_fromisoformat(day[:10])
        except ValueError:
            return False
        self._remember(self.days, day)
        return True

    def _quantity(self, q: Any) -> tuple[Decimal, str] | None:
        if type(q) is str and q.isascii() and q.isdigit() and len(q) <= _MAX_INT_DIGITS:
            # a plain whole number (byte counts: mostly distinct): what parse_quantity returns for it is
            # Decimal(q) (its pattern matches; no fraction to check), and its text is q itself unless it
            # has leading zeros; memoised only when short (long ones rarely repeat and would churn the memo)
            value = Decimal(q)
            known = (value, q if q[0] != "0" or len(q) == 1 else format(value, "f"))
            if len(q) > _MEMO_DIGITS:
                return known
        else:
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
