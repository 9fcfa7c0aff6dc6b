"""Invoice lines of a telecom plan: every call, SMS and data record re-rated at close, grouped by line.

Re-rating at close uses the same engine as the stream (`rating.telecom.rate_cdr`) and consumes bundles
in arrival order, the order the stream used, so the invoice reconciles with the real-time amounts.

Session records (interim and final records of one call: `dimensions.session_id`, processor/sessions.py) are
not re-rated alone, which would charge the connect fee and round up the increments with every slice: the
rated rows of one session are replayed, in arrival order, as the slices of one growing record through
`rating.telecom.sessions.rate_session_record` (the plan's own session rules: rounding per record or per
increment, caps per band), which is what the stream did. So a session costs what one record of its total
usage costs, whatever the cut, and equals the sum of its streamed slices. A session counts as one call in
its line's `events`, on the line where its first billed increment lies, with all its slices' streamed
amounts in that line's `streamed_amount` (as a single record split across bands counts where it starts).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from meterstream.aggregation.usage_query import UsageRecord
from meterstream.invoice_emitter.document import decimal_text
from meterstream.rating.catalog import Plan

SESSION_ID = "session_id"  # the dimension naming a rated row's session (processor/sessions.py)


def telecom_lines(plan: Plan, records: Iterable[UsageRecord]) -> tuple[list[dict[str, Any]], Decimal, Decimal]:
    """(lines by meter/destination group/time band, re-rated total, streamed total) for one customer.

    A line's `quantity` is the real usage, `billed_units` the units its billing increments billed (`bundle_units`
    of them from bundles), `streamed_amount` what the stream rated for the records counted in its `events` (a
    record split across bands counts in the line where it starts), `subject_quantities` the line's `quantity` per
    subject of its records ("": records without one), which the issued invoice shares the line's amount by."""
    from meterstream.rating import round_money
    from meterstream.rating.money import EXACT
    from meterstream.rating.telecom import rate_cdr

    used: dict[str, Decimal] = defaultdict(Decimal)
    quantity: dict[str, Decimal] = defaultdict(Decimal)
    amount: dict[str, Decimal] = defaultdict(Decimal)
    events: dict[str, int] = defaultdict(int)
    bundle_units: dict[str, Decimal] = defaultdict(Decimal)
    billed_units: dict[str, Decimal] = defaultdict(Decimal)
    streamed_by_line: dict[str, Decimal] = defaultdict(Decimal)
    by_subject: dict[str, dict[str, Decimal]] = defaultdict(dict)  # line key -> subject -> its usage on the line
    rerated = streamed = Decimal(0)
    add = EXACT.add  # sums in the one explicit context (the default one keeps only 28 digits)
    sessions: dict[tuple[str, str], list[Any]] = {}  # (meter, session id) -> [state, line key, streamed, usage]
    for r in records:
        sid = r.dimensions.get(SESSION_ID)
        if sid:
            rated = _slice(plan, sessions, sid, r, used)
        else:
            rated = rate_cdr(
                plan.telecom, meter=r.meter, quantity=r.quantity, start=r.time, dimensions=r.dimensions,
                bundle_used=used,
            )  # fmt: skip
        for bundle, units in rated.bundle_units_used.items():
            used[bundle] = add(used[bundle], units)
        for seg in rated.segments:
            key = f"{r.meter}/{seg.destination_group}/{seg.band}"
            quantity[key] = add(quantity[key], seg.usage)
            subjects = by_subject[key]
            subjects[r.subject] = add(subjects.get(r.subject, Decimal(0)), seg.usage)
            billed_units[key] = add(billed_units[key], seg.billed)
            if seg.bundle_id:
                bundle_units[key] = add(bundle_units[key], seg.billed)
        for key, value in rated.lines:
            amount[key] = add(amount[key], value)
        rerated = add(rerated, rated.cost)
        streamed = add(streamed, r.streamed_amount)
        if sid:
            continue  # counted once per session, below
        events[rated.line_key] += 1
        streamed_by_line[rated.line_key] = add(streamed_by_line[rated.line_key], r.streamed_amount)
    for (meter, _sid), (state, key, session_streamed, first) in sessions.items():
        if key is None:  # nothing billed: counted where a record of its (zero) usage would be
            key = rate_cdr(
                plan.telecom, meter=meter, quantity=Decimal(0), start=state.start, dimensions=first.dimensions,
                bundle_used=used,
            ).line_key  # fmt: skip
            quantity[key] = add(quantity[key], Decimal(0))
            by_subject[key].setdefault(first.subject, Decimal(0))
        events[key] += 1
        streamed_by_line[key] = add(streamed_by_line[key], session_streamed)
    lines = []
    for key in sorted(set(amount) | set(quantity)):
        meter, group, band = key.split("/", 2)
        precise = format(amount[key], "f")
        billed = decimal_text(billed_units[key])
        lines.append(
            {
                "meter": meter,
                "description": f"{meter.replace('_', ' ')}: {group}, {band}",
                "line_key": key,
                "quantity": decimal_text(quantity[key]),
                "events": events.get(key, 0),
                "bundle_units": decimal_text(bundle_units[key]),
                "billed_units": billed,
                "precise_amount": precise,
                "amount": format(round_money(amount[key], plan.currency), "f"),
                "streamed_amount": decimal_text(streamed_by_line[key]),
                "subject_quantities": {s: decimal_text(q) for s, q in sorted(by_subject[key].items())},
                # shown on the document as the line's pricing step (a version 2 line has no billed_units field)
                "breakdown": [
                    {
                        "description": "billed units (after billing increments)",
                        "kind": "billed_units",
                        "quantity": billed,
                        "amount": precise,
                    }
                ],
            }
        )
    return lines, rerated, streamed


def _slice(plan: Plan, sessions: dict[tuple[str, str], list[Any]], sid: str, r: UsageRecord, used: dict[str, Decimal]):
    """Re-rate one rated row of a session as the next slice of the session (`sessions` keeps its state).

    The rows carry no sequence: they are numbered in arrival order, the order the stream charged them (a row
    the stream released after a gap carries the held slices too, so it is one slice here as it was there).
    `final` is not passed: it changes no charge, and a row is never refused for coming after it."""
    from meterstream.rating.money import EXACT
    from meterstream.rating.telecom.sessions import SessionRecord, rate_session_record

    entry = sessions.get((r.meter, sid))
    state = entry[0] if entry is not None else None
    record = SessionRecord(
        session_id=sid,
        sequence=state.last_sequence + 1 if state is not None else 1,
        meter=r.meter,
        start=r.time,
        dimensions=r.dimensions,
        usage=r.quantity,
    )
    state, rated = rate_session_record(plan.telecom, state, record, bundle_used=used)
    if entry is None:
        entry = sessions[(r.meter, sid)] = [state, None, Decimal(0), r]
    entry[0] = state
    if entry[1] is None and rated.segments:
        seg = rated.segments[0]
        entry[1] = f"{r.meter}/{seg.destination_group}/{seg.band}"
    entry[2] = EXACT.add(entry[2], r.streamed_amount)
    return rated
