"""What the entity repositories share: OpenMeter-style ids, UTC times back from SQLite, three errors."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from meterstream.schemas.errors import FieldReasonError

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid(now: float | None = None) -> str:
    """A ULID (48-bit milliseconds + 80 random bits, Crockford base32): OpenMeter's id format."""
    ms = int((time.time() if now is None else now) * 1000)
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes for timezone=True columns: every stored time is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class NotFound(LookupError):
    """No such (active) entity for this tenant."""


class Conflict(ValueError):
    """The key, slug or subject is already taken; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Invalid(FieldReasonError):
    """Bad input: `field` is the path of the offending field (e.g. `usage.calls.tiers[1].up_to`), `reason` why.

    The message is `field: reason`. Raised before anything is written (a write is one transaction)."""
