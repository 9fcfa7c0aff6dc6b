"""Usage event v1: the pydantic model of `usage_event.v1.json` and the parser producers' bytes go through."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

QUANTITY_SCALE = 12
_QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]{1,12})?$")
_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


class InvalidEvent(ValueError):
    """A usage event that cannot be accepted; `field` names what is wrong, `reason` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_quantity(value: Any) -> Decimal:
    """Exact decimal from a string or JSON number; floats go through their shortest repr."""
    if isinstance(value, bool):
        raise ValueError("must be a decimal string or number, not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must be >= 0")
        return Decimal(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" in text or "E" in text or text in ("nan", "inf", "-inf"):
            text = format(Decimal(text), "f") if text not in ("nan", "inf", "-inf") else text
        value = text
    if isinstance(value, Decimal):
        value = format(value, "f")
    if not isinstance(value, str):
        raise ValueError("must be a decimal string or number")
    if not _QUANTITY_RE.match(value):
        if value.startswith("-"):
            raise ValueError("must be >= 0")
        raise ValueError(f"must be a non-negative decimal with at most {QUANTITY_SCALE} fractional digits")
    try:
        return Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the regex already guards this
        raise ValueError("not a decimal") from exc


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
    return parsed.replace(microsecond=micro - micro % 1000).astimezone(UTC)


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
    dimensions: dict[str, str] = Field(default_factory=dict, max_length=64)
    source: str | None = Field(None, max_length=256)
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
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("must carry a time zone offset")
            return value.astimezone(UTC).replace(microsecond=value.microsecond - value.microsecond % 1000)
        return parse_time(value)

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
        return data


def event_key(tenant: str, customer: str) -> bytes:
    return f"{tenant}/{customer}".encode()


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
_CANONICAL_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_FIELDS = frozenset(UsageEvent.model_fields)
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
    elif type(dimensions) is not dict or len(dimensions) > 64:
        return None
    else:
        for v in dimensions.values():
            if type(v) is not str:
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
        },
    )
    _set(event, "__pydantic_fields_set__", set(keys))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", {"_time_text": t})
    return event


def parse_event(raw: bytes | str) -> UsageEvent:
    """Bytes from Kafka to an event, or `InvalidEvent` naming the first bad field and why."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("$", f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidEvent("$", "must be a JSON object")
    event = _fast_event(data)
    if event is not None:
        return event
    try:
        return UsageEvent.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"]) or "$"
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            reason = "required"
        elif err["type"] == "extra_forbidden":
            reason = "unknown field"
        raise InvalidEvent(field, reason) from None
