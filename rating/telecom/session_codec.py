"""A session's state as JSON and back, for the caller that stores it per session id.

Decimals travel as strings (exact, exponent kept), times as ISO 8601 with their offset, the exact
cost as ``[fixed, num, den]``; held records go with the state. ``decode_state(encode_state(s)) == s``
and rating continues identically from the decoded state.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from meterstream.rating.telecom.sessions import SessionError, SessionRecord, SessionState
from meterstream.rating.telecom.walk import Cost

VERSION = 1


def _record(r: SessionRecord) -> dict[str, Any]:
    return {
        "session_id": r.session_id,
        "sequence": r.sequence,
        "meter": r.meter,
        "start": r.start.isoformat(),
        "dimensions": dict(r.dimensions),
        "usage": None if r.usage is None else str(r.usage),
        "total_usage": None if r.total_usage is None else str(r.total_usage),
        "final": r.final,
    }


def encode_state(state: SessionState) -> dict[str, Any]:
    """A JSON-ready dict of ``state``."""
    c = state.cost_exact
    return {
        "v": VERSION,
        "session_id": state.session_id,
        "meter": state.meter,
        "start": state.start.isoformat(),
        "destination": state.destination,
        "destination_id": state.destination_id,
        "destination_group": state.destination_group,
        "first_sequence": state.first_sequence,
        "last_sequence": state.last_sequence,
        "usage": str(state.usage),
        "billed": str(state.billed),
        "increments": state.increments,
        "connect_fee": str(state.connect_fee),
        "cost_exact": [str(c.fixed), str(c.num), c.den],
        "precise_cost": str(state.precise_cost),
        "cost": str(state.cost),
        "bundle_units_used": {k: str(v) for k, v in state.bundle_units_used},
        "capped": state.capped,
        "disconnect_at": None if state.disconnect_at is None else str(state.disconnect_at),
        "final": state.final,
        "missing": list(state.missing),
        "held": [_record(r) for r in state.held],
    }


def _dec(v: Any) -> Decimal | None:
    return None if v is None else Decimal(v)


def decode_state(doc: dict[str, Any]) -> SessionState:
    """The state ``encode_state`` wrote; raises ``SessionError`` naming a missing or bad field."""
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        raise SessionError("v", f"not a version {VERSION} session state")
    field = "?"
    try:
        field = "cost_exact"
        fixed, num, den = doc["cost_exact"]
        cost = Cost(Decimal(fixed), Decimal(num), int(den))
        field = "held"
        held = tuple(
            SessionRecord(
                session_id=r["session_id"],
                sequence=int(r["sequence"]),
                meter=r["meter"],
                start=datetime.fromisoformat(r["start"]),
                dimensions=dict(r["dimensions"]),
                usage=_dec(r["usage"]),
                total_usage=_dec(r["total_usage"]),
                final=bool(r["final"]),
            )
            for r in doc["held"]
        )
        values: dict[str, Any] = {}
        for field in ("session_id", "meter", "destination", "destination_id", "destination_group"):
            values[field] = doc[field]
        for field in ("first_sequence", "last_sequence", "increments"):
            values[field] = int(doc[field])
        for field in ("usage", "billed", "connect_fee", "precise_cost", "cost"):
            values[field] = Decimal(doc[field])
        field = "start"
        values["start"] = datetime.fromisoformat(doc["start"])
        field = "bundle_units_used"
        values["bundle_units_used"] = tuple((k, Decimal(v)) for k, v in doc["bundle_units_used"].items())
        field = "disconnect_at"
        values["disconnect_at"] = _dec(doc["disconnect_at"])
        for field in ("capped", "final"):
            values[field] = bool(doc[field])
        field = "missing"
        values["missing"] = tuple(int(s) for s in doc["missing"])
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise SessionError(field, f"missing or bad in the stored session state ({exc!r})") from None
    return SessionState(cost_exact=cost, held=held, **values)
