"""Any cut of a session costs what one record costs; any arrival order (with repeats) the same again."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from meterstream.rating.telecom import rate_cdr
from meterstream.rating.telecom.session_rules import SessionRules
from meterstream.rating.telecom.sessions import SessionRecord, rate_session_record

from .strategies import caps, starts, used

D = Decimal


@st.composite
def sessions(draw):
    """(meter, number, start, total usage, records as (usage or None, total or None))."""
    meter = draw(st.sampled_from(["voice_seconds", "voice_seconds", "voice_seconds", "data_bytes"]))
    if meter == "voice_seconds":
        number = draw(st.sampled_from(["+4930123", "+4917123", "+44207"]))
        total = draw(st.one_of(st.integers(0, 4000).map(D), st.decimals(0, 4000, places=3)))
    else:
        number = None
        total = D(draw(st.integers(0, 60_000_000)))
    cuts = sorted(draw(st.lists(st.decimals(0, total, places=3) if total else st.just(D(0)), max_size=6)))
    points = [*cuts, total]
    records, before = [], D(0)
    for p in points:
        cumulative = draw(st.booleans())
        records.append((None, p) if cumulative else (p - before, None))
        before = p
    return meter, number, draw(starts), total, records


def _feed(plan, meter, number, start, records, bundle_used, rules, order=None):
    used = dict(bundle_used)
    dims = {"destination": number} if number else {}
    state, slices = None, []
    for i in order if order is not None else range(len(records)):
        usage, total = records[i]
        rec = SessionRecord("s", i + 1, meter, start, dims, usage=usage, total_usage=total, final=i == len(records) - 1)
        state, s = rate_session_record(plan, state, rec, bundle_used=used, rules=rules)
        for k, v in s.bundle_units_used.items():
            used[k] = used.get(k, D(0)) + v
        slices.append(s)
    return state, slices


def _by_band(segments):
    billed, usage = Counter(), Counter()
    for s in segments:
        billed[s.band] += s.billed
        usage[s.band] += s.usage
    return {k: v for k, v in billed.items() if v}, {k: v for k, v in usage.items() if v}


@settings(max_examples=300, deadline=None)
@given(session=sessions(), bundle_used=used)
def test_any_cut_costs_one_record(plan, session, bundle_used):
    meter, number, start, total, records = session
    state, slices = _feed(plan, meter, number, start, records, bundle_used, SessionRules())
    dims = {"destination": number} if number else {}
    one = rate_cdr(plan, meter=meter, quantity=total, start=start, dimensions=dims, bundle_used=bundle_used)
    assert sum(s.cost for s in slices) == state.cost == one.cost
    assert state.precise_cost == one.precise_cost
    assert (state.usage, state.billed, state.capped) == (total, one.billed, one.capped)
    assert sum(s.increments for s in slices) == state.increments == sum(s.increments for s in one.segments)
    assert dict(state.bundle_units_used) == {k: v for k, v in one.bundle_units_used.items() if v}
    assert _by_band(g for s in slices for g in s.segments) == _by_band(one.segments)
    assert sum(s.connect_fee for s in slices) == sum(s.connect_fee for s in one.segments)
    assert all(sum(a for _, a in s.lines) == s.cost for s in slices if s.lines)
    assert all(s.cost >= 0 for s in slices)


@settings(max_examples=200, deadline=None)
@given(session=sessions(), bundle_used=used, rounding=st.sampled_from(["per_record", "per_increment"]), cap=caps)
def test_with_rules_any_cut_costs_one_record(plan, session, bundle_used, rounding, cap):
    # rate_cdr knows neither per-increment rounding nor band caps: the reference is a one-record session
    meter, number, start, total, records = session
    rules = SessionRules(rounding=rounding, max_cost=tuple(cap))
    state, slices = _feed(plan, meter, number, start, records, bundle_used, rules)
    one, _ = _feed(plan, meter, number, start, [(None, total)], bundle_used, rules)
    assert sum(s.cost for s in slices) == state.cost == one.cost
    assert (state.precise_cost, state.capped, state.disconnect_at) == (one.precise_cost, one.capped, one.disconnect_at)
    if rounding == "per_increment":
        assert state.cost == state.precise_cost  # every increment already on the rating precision


@settings(max_examples=200, deadline=None)
@given(session=sessions(), bundle_used=used, data=st.data())
def test_any_arrival_order_with_repeats(plan, session, bundle_used, data):
    meter, number, start, total, records = session
    in_order, _ = _feed(plan, meter, number, start, records, bundle_used, SessionRules())
    n = len(records)
    order = data.draw(st.permutations(range(n)))
    repeats = data.draw(st.lists(st.integers(0, n - 1), max_size=3))
    order = list(order) + repeats  # a repeat after its first arrival is a duplicate (or late)
    state, slices = _feed(plan, meter, number, start, records, bundle_used, SessionRules(), order)
    assert state.held == ()
    assert state.cost == in_order.cost == sum(s.cost for s in slices)
    assert state.usage == total
    assert Counter(s.outcome for s in slices)["duplicate"] + Counter(s.outcome for s in slices)["late"] >= len(repeats)
