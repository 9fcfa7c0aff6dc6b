"""The longest usage a balance pays for: ``max_duration``, for authorizing a call before it starts.

Pure and exact: it walks the same pieces a session is rated by (``walk.pieces``: connect fee, the
increment grid from the session start, time bands in the plan's zone, rate groups, bundles first,
caps per band) and, inside the piece where the money runs out, finds the last affordable increment
end by bisection over whole increments of that one piece, on the exact cost (cost is non-decreasing
in the billed end, so the bisection is exact). The answer is always an increment end: usage up to
it costs what an increment end costs, and one more increment costs more than the balance.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from meterstream.rating.money import rounding_runner
from meterstream.rating.telecom.rater import MAX_VOICE_SECONDS
from meterstream.rating.telecom.session_rules import SessionRules, rules_for
from meterstream.rating.telecom.sessions import SessionError, SessionState
from meterstream.rating.telecom.walk import (
    INF,
    ZERO,
    ZERO_COST,
    amount,
    charge,
    connect_reached,
    first_index,
    pieces,
    reached,
    resolve,
)


def max_duration(
    plan,
    *,
    meter: str,
    balance: Decimal,
    start: datetime,
    dimensions: Mapping[str, str],
    bundle_used: Mapping[str, Decimal],
    session: SessionState | None = None,
    rules: SessionRules | None = None,
    horizon: Decimal | None = None,
) -> Decimal:
    """The longest further usage (base units: seconds for voice) whose charge does not exceed ``balance``.

    For a new session (``session`` None) the charge includes the connect fee and the answer counts
    from 0; for a running session it counts from ``session.usage``, and the charge is what the next
    slices would add (``balance`` is what is left now). The charge is the rounded cost the session
    would be charged (``rate_cdr``'s ``cost`` for one record). A ``disconnect`` cap ends the answer
    where it is reached. The answer is at most ``horizon`` (default: 31 days for voice, the longest
    record; unbounded for SMS and data, where ``Decimal('Infinity')`` means the balance never runs
    out). ``rules`` None: the plan's own ``sessions:`` rules. Raises ``NoRate`` as ``rate_cdr`` does,
    ``ValueError`` for a bad balance or horizon.
    """
    run = rounding_runner()
    rules = rules_for(plan, rules)
    return run(_max_duration, plan, meter, balance, start, dimensions, bundle_used, session, rules, horizon)


def _max_duration(plan, meter, balance, start, dimensions, bundle_used, session, rules, horizon):
    if not isinstance(balance, Decimal) or not balance.is_finite():
        raise ValueError(f"balance must be a finite Decimal, got {balance!r}")
    if horizon is not None and (not isinstance(horizon, Decimal) or horizon.is_nan() or horizon < 0):
        raise ValueError(f"horizon must be a Decimal >= 0, got {horizon!r}")
    if session is not None:
        for name, mine, theirs in (
            ("meter", session.meter, meter),
            ("start", session.start, start),
            ("dimensions.destination", session.destination, dimensions.get("destination")),
        ):
            if mine != theirs:
                raise SessionError(name, f"{theirs!r} differs from the session's {mine!r}")
    cost = session.cost_exact if session is not None else ZERO_COST
    t = resolve(plan, meter=meter, start=start, dimensions=dimensions, rules=rules, den=cost.den)
    cost = cost.rescaled(t.den)
    u0 = session.usage if session is not None else ZERO
    billed0 = session.billed if session is not None else ZERO
    if horizon is None:
        horizon = Decimal(MAX_VOICE_SECONDS) if t.voice else INF
    limit = u0 + horizon
    if session is not None and session.final:
        return ZERO  # the session has ended
    if session is not None and session.disconnect_at is not None:
        return max(min(session.disconnect_at, limit) - u0, ZERO)
    budget = (session.cost if session is not None else ZERO) + balance

    def fits(c) -> bool:
        return c.precise().quantize(t.quantum, t.rounding) <= budget

    best = billed0  # paid already (the rest of the current increment)
    remaining = {b.id: b.amount - bundle_used.get(b.id, ZERO) for b in t.dest.bundles}
    connect_due = billed0 == 0
    for p in pieces(t, billed0, limit, remaining, {}):
        cap = t.caps[p.band]
        if connect_due:
            connect_due = False
            before = cost
            cost, _, cut = charge(cost, p.rate.connect_fee * t.den, cap)
            if cut and cap[1] == "disconnect":  # nothing more is charged: the cost stays at the cap
                end = connect_reached(t, before, cap) if fits(cost) else ZERO
                return min(end, limit) - u0
        if p.phi.is_infinite():
            end = _open_end(t, cost, p, cap, fits)
            return end if end.is_infinite() else min(end, limit) - u0
        after, _, cut = charge(cost, amount(t, p, p.phi), cap)
        if fits(after):
            if cut and cap[1] == "disconnect":
                return min(reached(t, cost, p), limit) - u0
            cost = after
            best = max(best, t.point(t.index_at_most(p.phi)))
            if cut and _nothing_more(t, cost):
                return limit - u0  # every band's cap stops charging at or below the cost so far
            continue
        end = _last_fitting(t, cost, p, cap, fits, t.index_at_most(p.phi)) or best
        if cap is not None and cap[1] == "disconnect" and charge(cost, amount(t, p, end), cap)[2]:
            end = min(end, reached(t, cost, p))
        return min(max(end, best), limit) - u0
    return min(best, limit) - u0


def _open_end(t, cost, p, cap, fits) -> Decimal:
    """The last affordable increment end in a piece without end (SMS and data: the last rate group)."""
    if p.bundle_id is not None or not p.group[1]:
        return INF  # free from here on
    if cap is not None:
        capped_cost = charge(cost, cap[0] * cost.den + 1, cap)[0]  # more than any room: the cost at the cap
        if fits(capped_cost):
            return reached(t, cost, p) if cap[1] == "disconnect" else INF
    return _last_fitting(t, cost, p, cap, fits, None) or t.point(t.index_at_most(p.plo))


def _last_fitting(t, cost, p, cap, fits, hi: int | None) -> Decimal | None:
    """The last increment end in ``p`` (up to index ``hi``) whose cost fits, None if even the first does not."""
    lo = t.index_after(p.plo)
    k = first_index(lambda k: not fits(charge(cost, amount(t, p, t.point(k)), cap)[0]), lo, hi) - 1
    return t.point(k) if k >= lo else None


def _nothing_more(t, cost) -> bool:
    """Whether no band can charge anything more: each has a stop_charging cap the cost has reached."""
    scaled = cost.fixed * cost.den + cost.num
    return all(c is not None and c[1] == "stop_charging" and c[0] * cost.den <= scaled for c in t.caps.values())
