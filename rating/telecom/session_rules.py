"""Session options: money rounding per record or per increment, and maximum cost per time band.

CGRateS users expect both (``RoundingDecimals`` applied per increment, and ``MaxCost`` with
``MaxCostStrategy`` ``*free`` / ``*disconnect`` on each destination rate of a timing). The rules
(docs/telecom.md, *Sessions*):

* ``rounding: per_record`` (default): a session's exact cost is rounded once, with the plan's
  decimals and method; each slice is charged ``round(cost after) - round(cost before)``, so the
  remainder is carried and the slices sum to the one-record cost.
* ``rounding: per_increment``: every billed increment (or the charged part of one a bundle ran out
  inside) is rounded on its own; the session cost is their sum.
* ``max_cost``: caps, each for a destination id (``None`` = every destination) and a time band
  (``None`` = every band), first match wins. The session's cost so far (connect fee included) is
  compared with the cap of the band in force at each increment: what would go beyond it is not
  charged (``stop_charging``); ``disconnect`` also tells the caller to cut the session there.
  Where no cap matches, the plan's ``max_cost`` of the destination applies as ``stop_charging``
  (what ``rate_cdr`` does for one record).

These rules are a value the caller passes (the catalog's ``telecom:`` section does not carry them
yet); :func:`parse_session_rules` validates one against a plan.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from meterstream.rating.telecom.errors import TelecomCatalogError
from meterstream.rating.telecom.model import ANY, TelecomPlan

Strategy = Literal["stop_charging", "disconnect"]


class BandCap(BaseModel):
    """At most ``amount`` for a session while ``band`` is in force (to ``destination``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    destination: str | None = None  # a destination id of the plan, "*any" (the default rate), None: all
    band: str | None = None  # a time band of the plan, None: all
    amount: Decimal = Field(ge=0, allow_inf_nan=False)
    strategy: Strategy = "stop_charging"


class SessionRules(BaseModel):
    """How sessions are rounded and capped (defaults: one rounding per session, the plan's caps)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rounding: Literal["per_record", "per_increment"] = "per_record"
    max_cost: tuple[BandCap, ...] = ()

    def cap(self, destination_id: str, band: str, default: Decimal | None) -> tuple[Decimal, Strategy] | None:
        """The cap for ``band`` on ``destination_id``: the first matching entry, else the plan's."""
        for c in self.max_cost:
            if c.destination in (None, destination_id) and c.band in (None, band):
                return c.amount, c.strategy
        return None if default is None else (default, "stop_charging")


DEFAULT_RULES = SessionRules()


def parse_session_rules(section: dict[str, Any], *, plan: TelecomPlan) -> SessionRules:
    """Validate session rules for ``plan``; raises :class:`TelecomCatalogError` naming each bad field.

    Paths start with ``sessions``, e.g. ``("sessions.max_cost[0].band", "unknown time band 'night'")``.
    """
    if not isinstance(section, dict):
        raise TelecomCatalogError([("sessions", "must be a mapping")])
    try:
        rules = SessionRules.model_validate(section)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            path = "sessions"
            for part in e["loc"]:
                path += f"[{part}]" if isinstance(part, int) else f".{part}"
            problems.append((path, e["msg"]))
        raise TelecomCatalogError(problems) from None
    bands = set(plan.bands())
    destinations = set(plan.destinations) | {ANY}
    problems = []
    for i, c in enumerate(rules.max_cost):
        if c.band is not None and c.band not in bands:
            problems.append((f"sessions.max_cost[{i}].band", f"unknown time band {c.band!r}"))
        if c.destination is not None and c.destination not in destinations:
            problems.append((f"sessions.max_cost[{i}].destination", f"unknown destination {c.destination!r}"))
    if problems:
        raise TelecomCatalogError(problems)
    return rules
