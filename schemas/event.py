"""Usage event v1: the pydantic model of `usage_event.v1.json` and the parser producers' bytes go through."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from meterstream.schemas.errors import FieldReasonError

# Limits of what an event may carry: what the stores and the money type can hold (docs/events.md).
# The processor's columnar path imports these; `parse_event` stays the one definition of "valid".
QUANTITY_SCALE = 12  # fractional digits: ClickHouse rated_usage.quantity is Decimal(38, 12)
QUANTITY_MAX_INTEGER_DIGITS = 26  # 38 - 12: a 27-digit quantity makes ClickHouse refuse the whole insert
QUANTITY_MAX = Decimal("9" * QUANTITY_MAX_INTEGER_DIGITS + "." + "9" * QUANTITY_SCALE)
# A JSON *number* quantity must be an integer-exact double: above 2^53 - 1 (I-JSON, RFC 7493 section 2.2)
# parsers (orjson beyond 2^64, JavaScript beyond 2^53) silently round it. Larger quantities travel as strings.
JSON_NUMBER_MAX = 2**53 - 1
DIMENSION_KEY_MAX_BYTES = 128  # UTF-8 bytes; keys are ClickHouse LowCardinality map keys: names, not data
DIMENSION_VALUE_MAX_BYTES = 1024  # UTF-8 bytes
DIMENSIONS_MAX = 64
# ClickHouse DateTime64(3, 'UTC') holds [1900-01-01 00:00:00, 2299-12-31 23:59:59.999]; outside it an insert
# fails (or clamps), so such times are refused at parse whatever the time window allows.
TIME_MIN = datetime(1900, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(2299, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
DEFAULT_MAX_AGE_DAYS = 92  # Settings.event_max_age_days; see docs/events.md for why
DEFAULT_MAX_FUTURE_MINUTES = 60  # Settings.event_max_future_minutes

_QUANTITY_RE = re.compile(rf"^[0-9]{{1,{QUANTITY_MAX_INTEGER_DIGITS}}}(\.[0-9]{{1,{QUANTITY_SCALE}}})?$")
_DECIMAL_TEXT_RE = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
_CONTROL_RE = re.compile(r"[\x00-\x1f]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class InvalidEvent(FieldReasonError):
    """A usage event that cannot be accepted; `field` names what is wrong, `reason` says why."""


def parse_quantity(value: Any) -> Decimal:
    """Exact decimal from a string or JSON number; floats go through their shortest repr.

    Refused: negatives (a credit is not usage), booleans, JSON numbers above `JSON_NUMBER_MAX`, more than
    `QUANTITY_SCALE` fractional or `QUANTITY_MAX_INTEGER_DIGITS` integer digits. -0 and -0.0 are zero.
    """
    if isinstance(value, bool):
        raise ValueError("must be a decimal string or number, not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must be >= 0")
        if value > JSON_NUMBER_MAX:
            raise ValueError(_NUMBER_TOO_BIG)
        return Decimal(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
        if value < 0:
            raise ValueError("must be >= 0")
        if value > JSON_NUMBER_MAX:
            raise ValueError(_NUMBER_TOO_BIG)
        value = format(Decimal(repr(abs(value))), "f")  # abs: -0.0 is 0; shortest repr, never exponent form
    elif isinstance(value, Decimal):
        value = format(value, "f")
    if not isinstance(value, str):
        raise ValueError("must be a decimal string or number")
    if not _QUANTITY_RE.match(value):
        if value.startswith("-"):
            raise ValueError("must be >= 0")
        if _DECIMAL_TEXT_RE.match(value) and len(value.partition(".")[0]) > QUANTITY_MAX_INTEGER_DIGITS:
            raise ValueError(
                f"must have at most {QUANTITY_MAX_INTEGER_DIGITS} digits before the decimal point "
                f"(stored as Decimal(38, {QUANTITY_SCALE}))"
            )
        raise ValueError(f"must be a non-negative decimal with at most {QUANTITY_SCALE} fractional digits")
    try:
        return Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the regex already guards this
        raise ValueError("not a decimal") from exc


_NUMBER_TOO_BIG = (
    f"a JSON number above {JSON_NUMBER_MAX} (2^53 - 1) is not exact in every JSON parser: "
    "send the quantity as a decimal string"
)


def parse_time(value: Any) -> datetime:
    """RFC 3339 with an offset, normalised to UTC and truncated to milliseconds."""
    if not isinstance(value, str) or not _TIME_RE.match(value):
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2026-11-01T12:00:00.000Z")
    text = value.replace("t", "T").replace("z", "Z").replace(" ", "T")
    frac = ""
    if "." in text:
        head, rest = text.split(".", 1)
        digits = re.match(r"\d+", rest).group(0)  # type: ignore[union-attr]
        frac, text = digits[:6].ljust(6, "0"), head + rest[len(digits) :]
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not a valid date-time ({exc})") from exc
    micro = int(frac) if frac else 0
    return _in_range(parsed.replace(microsecond=micro - micro % 1000).astimezone(UTC))


def _in_range(when: datetime) -> datetime:
    if not TIME_MIN <= when <= TIME_MAX:
        raise ValueError("must be between 1900-01-01T00:00:00Z and 2299-12-31T23:59:59.999Z (ClickHouse DateTime64)")
    return when


def check_dimensions(dimensions: dict[str, str]) -> None:
    """Keys: 1 to DIMENSION_KEY_MAX_BYTES UTF-8 bytes, no control characters; values: at most
    DIMENSION_VALUE_MAX_BYTES UTF-8 bytes. Raises `DimensionError` (with the key when a value is wrong)."""
    for key, value in dimensions.items():
        if not key:
            raise DimensionError(None, "a key must not be empty")
        if len(key) > DIMENSION_KEY_MAX_BYTES // 4:  # 4 bytes per character at most: only long keys need counting
            n = len(key.encode("utf-8", "surrogatepass"))
            if n > DIMENSION_KEY_MAX_BYTES:
                raise DimensionError(
                    None, f"key {key[:32]!r}... is {n} UTF-8 bytes, at most {DIMENSION_KEY_MAX_BYTES} allowed"
                )
        if _CONTROL_RE.search(key):
            raise DimensionError(None, f"key {key!r} contains a control character (U+0000-U+001F)")
        if len(value) > DIMENSION_VALUE_MAX_BYTES // 4:
            n = len(value.encode("utf-8", "surrogatepass"))
            if n > DIMENSION_VALUE_MAX_BYTES:
                raise DimensionError(key, f"value is {n} UTF-8 bytes, at most {DIMENSION_VALUE_MAX_BYTES} allowed")


class FieldError(ValueError):
    """A model-level check's error, naming the field it is about (`parse_event` reports that field)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


class DimensionError(ValueError):
    """A bad dimension: `key` names the entry whose value is wrong (None: a key itself is wrong)."""

    def __init__(self, key: str | None, reason: str) -> None:
        super().__init__(reason)
        self.key = key


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """How far an event's time may lie before / after the moment it was received (milliseconds)."""

    max_age_ms: int
    max_future_ms: int

    @classmethod
    def of(cls, max_age_days: float, max_future_minutes: float) -> TimeWindow:
        return cls(int(max_age_days * 86_400_000), int(max_future_minutes * 60_000))

    def check(self, when: datetime, received_ms: int) -> None:
        """Raise `InvalidEvent("time", ...)` when `when` lies outside the window around `received_ms`.

        The reason names the limits, not the clock, so a replay judged against the same `received_ms`
        writes the same dead letter.
        """
        t = (when - _EPOCH) // _MS
        if t < received_ms - self.max_age_ms:
            raise InvalidEvent("time", f"more than {_days(self.max_age_ms)} days before the event was received")
        if t > received_ms + self.max_future_ms:
            raise InvalidEvent("time", f"more than {self.max_future_ms // 60_000} minutes after the event was received")


def _days(ms: int) -> str:
    days = ms / 86_400_000
    return str(int(days)) if days == int(days) else f"{days:g}"


DEFAULT_TIME_WINDOW = TimeWindow.of(DEFAULT_MAX_AGE_DAYS, DEFAULT_MAX_FUTURE_MINUTES)


SESSION_SEQUENCE_MAX = 2**31 - 1


class SessionInfo(BaseModel):
    """An interim or final record of one call or data session (docs/telecom.md, *Sessions in the stream*).

    The event's `quantity` is this record's slice of usage, or with `total_usage` true the session's usage
    since `start`; `start` is the session's start (answer time), the same on every record of the session.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=256)
    sequence: StrictInt = Field(ge=0, le=SESSION_SEQUENCE_MAX)
    start: datetime
    total_usage: StrictBool = False
    final: StrictBool = False

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: Any) -> datetime:
        return _aware_time(value)

    def to_wire(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "sequence": self.sequence, "start": format_time(self.start)}
        if self.total_usage:
            data["total_usage"] = True
        if self.final:
            data["final"] = True
        return data


ORIGIN_MAX = 256  # characters of an origin's key and of its kind


class Origin(BaseModel):
    """The client's own event that this usage event was derived from, when one client event yields several usage
    events (the OpenMeter and Lago layers: one per meter its type or code feeds; docs/events.md, *Origin*).

    `key` names the client event (OpenMeter: its source and id; Lago: its transaction id), `kind` what it was
    sent as (OpenMeter: its type; Lago: its code). The first kind seen for a key within the dedup window is the
    event's: a usage event whose origin has the same key and another kind is a duplicate (dropped, counted, never
    charged), as OpenMeter and Lago drop a second event with the same id whatever its type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=1, max_length=ORIGIN_MAX)
    kind: str = Field(min_length=1, max_length=ORIGIN_MAX)


def _aware_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("must carry a time zone offset")
        return _in_range(value.astimezone(UTC).replace(microsecond=value.microsecond - value.microsecond % 1000))
    return parse_time(value)


class UsageEvent(BaseModel):
    """One accepted usage event (schema v1). Immutable; quantities are exact decimals."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    id: str = Field(min_length=1, max_length=256)
    tenant: str = Field(min_length=1, max_length=128, pattern=r"^[^/\x00-\x1f]+$")
    customer: str = Field(min_length=1, max_length=256)
    subject: str | None = Field(None, max_length=256)
    meter: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,127}$")
    quantity: Decimal
    time: datetime
    dimensions: dict[str, str] = Field(default_factory=dict, max_length=DIMENSIONS_MAX)
    source: str | None = Field(None, max_length=256)
    session: SessionInfo | None = None  # a telecom session's interim or final record
    origin: Origin | None = None  # the client event it was derived from (compatibility layers)
    _time_text: str = PrivateAttr("")  # `time` in wire form, kept from the input when it already was

    def model_post_init(self, context: Any, /) -> None:
        self.__pydantic_private__["_time_text"] = format_time(self.time)  # type: ignore[index]

    @property
    def time_text(self) -> str:
        """`time` as RFC 3339 in UTC with milliseconds and a `Z` (formatting a datetime costs ~2 µs here)."""
        return self.__pydantic_private__["_time_text"]  # type: ignore[index]

    @field_validator("quantity", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> Decimal:
        return parse_quantity(value)

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> datetime:
        return _aware_time(value)

    @model_validator(mode="after")
    def _session_start(self) -> UsageEvent:
        if self.session is not None and self.session.start > self.time:
            raise FieldError("session.start", "must not be after the record's time")
        return self

    @field_validator("dimensions", mode="after")
    @classmethod
    def _dimensions(cls, value: dict[str, str]) -> dict[str, str]:
        check_dimensions(value)
        return value

    @property
    def key(self) -> bytes:
        """Kafka key: one customer's events stay ordered on one partition."""
        return event_key(self.tenant, self.customer)

    @property
    def identity(self) -> str:
        """(tenant, id) as one string: the dedup key."""
        return f"{self.tenant}\x1f{self.id}"

    def to_json(self) -> bytes:
        """Canonical wire form: quantity as a string, time as RFC 3339 with milliseconds."""
        return orjson.dumps(self.to_wire())

    def to_wire(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "tenant": self.tenant,
            "customer": self.customer,
            "meter": self.meter,
            "quantity": format(self.quantity, "f"),
            "time": self.time_text,
        }
        if self.subject is not None:
            data["subject"] = self.subject
        if self.dimensions:
            data["dimensions"] = self.dimensions
        if self.source is not None:
            data["source"] = self.source
        if self.session is not None:
            data["session"] = self.session.to_wire()
        if self.origin is not None:
            data["origin"] = {"key": self.origin.key, "kind": self.origin.kind}
        return data


def event_key(tenant: str, customer: str) -> bytes:
    return f"{tenant}/{customer}".encode()


def partition_of(tenant: str, customer: str, partitions: int) -> int:
    """The partition of a customer's usage events: librdkafka's default partitioner (`consistent_random`: CRC-32
    of the key modulo the partition count) over the usage key `tenant/customer` (`event_key`), the key of every
    producer of usage (the API's ingest, ingest.producer, the workload)."""
    return partition_of_key(event_key(tenant, customer), partitions)


def partition_of_key(key: bytes, partitions: int) -> int:
    """The partition librdkafka's default partitioner gives a message with this (non-empty) key."""
    return zlib.crc32(key) % partitions


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and a `Z`: the one text form of event times downstream."""
    if value.tzinfo is UTC and value.year >= 1000:  # the parsed events' case: no conversion needed
        return value.isoformat(timespec="milliseconds")[:23] + "Z"
    utc = value.astimezone(UTC)
    if utc.year >= 1000:  # isoformat pads years to 4 digits, strftime("%Y") does not: keep strftime's output
        return utc.isoformat(timespec="milliseconds")[:23] + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


_TENANT_RE = re.compile(r"[^/\x00-\x1f]+")
_METER_RE = re.compile(r"[a-z][a-z0-9_.-]{0,127}")
# canonical UTC text of a year 1900-2299: within TIME_MIN..TIME_MAX without computing anything
_CANONICAL_TIME_RE = re.compile(r"(?:19|2[0-2])[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_FAST_VALUE_CHARS = DIMENSION_VALUE_MAX_BYTES // 4  # at most 4 UTF-8 bytes per character
_FAST_KEY_CHARS = DIMENSION_KEY_MAX_BYTES // 4
_FIELDS = frozenset(UsageEvent.model_fields) - {"session", "origin"}  # those records go through pydantic
_REQUIRED = frozenset(name for name, f in UsageEvent.model_fields.items() if f.is_required())
_new_event = UsageEvent.__new__
_set = object.__setattr__
_fromisoformat = datetime.fromisoformat


def _fast_event(data: dict[str, Any]) -> UsageEvent | None:
    """The model for the common, plainly valid event without running pydantic; None when unsure.

    Accepts only what `UsageEvent.model_validate` accepts and yields an equal model (same values, same
    fields set); anything else (including every invalid event) returns None, and the pydantic model,
    which stays the schema's definition, decides and names the error.
    """
    keys = data.keys()
    if not (keys <= _FIELDS and _REQUIRED <= keys):
        return None
    id_, tenant, customer, meter = data["id"], data["tenant"], data["customer"], data["meter"]
    if not (
        type(id_) is str
        and 0 < len(id_) <= 256
        and type(tenant) is str
        and len(tenant) <= 128
        and _TENANT_RE.fullmatch(tenant)
        and type(customer) is str
        and 0 < len(customer) <= 256
        and type(meter) is str
        and _METER_RE.fullmatch(meter)
    ):
        return None
    subject = data.get("subject")
    source = data.get("source")
    if (subject is not None and (type(subject) is not str or len(subject) > 256)) or (
        source is not None and (type(source) is not str or len(source) > 256)
    ):
        return None
    dimensions = data.get("dimensions")
    if dimensions is None:
        if "dimensions" in data:
            return None  # null is not a mapping: pydantic names the error
        dimensions = {}
    elif type(dimensions) is not dict or len(dimensions) > DIMENSIONS_MAX:
        return None
    else:
        for k, v in dimensions.items():
            if type(v) is not str or len(v) > _FAST_VALUE_CHARS or not k or len(k) > _FAST_KEY_CHARS:
                return None  # long text may still be within the byte limits: check_dimensions decides
            if _CONTROL_RE.search(k):
                return None
    t = data["time"]
    if type(t) is not str:
        return None
    try:
        if len(t) == 24 and _CANONICAL_TIME_RE.fullmatch(t):
            when = _fromisoformat(t)  # already UTC with milliseconds: what parse_time would return
        else:
            when = parse_time(t)
            t = format_time(when)
        quantity = parse_quantity(data["quantity"])
    except ValueError:
        return None
    event = _new_event(UsageEvent)
    _set(
        event,
        "__dict__",
        {
            "id": id_,
            "tenant": tenant,
            "customer": customer,
            "subject": subject,
            "meter": meter,
            "quantity": quantity,
            "time": when,
            "dimensions": dimensions,
            "source": source,
            "session": None,
            "origin": None,
        },
    )
    _set(event, "__pydantic_fields_set__", set(keys))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", {"_time_text": t})
    return event


def parse_event(
    raw: bytes | str, received_ms: int | None = None, window: TimeWindow = DEFAULT_TIME_WINDOW
) -> UsageEvent:
    """Bytes from Kafka to an event, or `InvalidEvent` naming the first bad field and why.

    `received_ms` (epoch milliseconds) is when the event reached the pipeline; the processor passes the
    Kafka message timestamp, which a replay of the message sees again (or its batch clock when the
    message has none). The event's time must lie within `window` around it. Without `received_ms`
    (tools, tests) the time is only checked against what the stores can hold.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("$", f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidEvent("$", "must be a JSON object")
    event = _fast_event(data)
    if event is None:
        event = _validate(data)
    if received_ms is not None:
        window.check(event.time, received_ms)
    return event


def _validate(data: dict[str, Any]) -> UsageEvent:
    try:
        return UsageEvent.model_validate(data)
    except ValidationError as exc:
        field, reason = _first_error(exc)
    # raised outside the handler and with no local holding an error: the validator's exception (whose
    # traceback holds this frame and, through it, every caller's) is not kept alive in a reference cycle
    raise InvalidEvent(field, reason) from None


def _first_error(exc: ValidationError) -> tuple[str, str]:
    """The field and reason of the first error pydantic found."""
    err = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in err["loc"]) or "$"
    reason = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        reason = "required"
    elif err["type"] == "extra_forbidden":
        reason = "unknown field"
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, DimensionError) and cause.key is not None:
        field = f"{field}.{cause.key}"
    elif isinstance(cause, FieldError):
        field, reason = cause.field, cause.reason
    return field, reason
