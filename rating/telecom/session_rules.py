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

A plan says them in its ``telecom:`` section under ``sessions:`` (``TelecomPlan.sessions``, validated
with the plan: schemas/telecom_plan.v1.json); a caller may still pass other rules explicitly, and
:func:`parse_session_rules` validates a separate ``sessions`` mapping against a plan.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from meterstream.rating.telecom.errors import TelecomCatalogError
from meterstream.rating.telecom.model import (
    DEFAULT_RULES,
    BandCap,
    SessionRules,
    Strategy,
    TelecomPlan,
    session_problems,
)

__all__ = ["DEFAULT_RULES", "BandCap", "SessionRules", "Strategy", "parse_session_rules", "rules_for"]


def rules_for(plan: Any, rules: SessionRules | None) -> SessionRules:
    """``rules`` when given, else the plan's own ``sessions:`` rules (a plan without them: the defaults)."""
    if rules is not None:
        return rules
    return getattr(plan, "sessions", None) or DEFAULT_RULES


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
    problems = session_problems(rules, plan, "sessions")
    if problems:
        raise TelecomCatalogError(problems)
    return rules
