"""A stored session state (JSON) decodes to the same state, and rating continues identically from it."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterstream.rating.telecom.session_codec import decode_state, encode_state
from meterstream.rating.telecom.session_rules import SessionRules
from meterstream.rating.telecom.sessions import SessionError, SessionRecord, rate_session_record

from .plans import berlin
from .test_sessions_properties import sessions, used

D = Decimal


def _through_json(state):
    return decode_state(json.loads(json.dumps(encode_state(state))))


def test_round_trip_keeps_everything(plan):
    # held record, a missing sequence, bundle use, a disconnect point: all survive
    start = berlin(2025, 3, 4, 10)
    rules = SessionRules(max_cost=({"destination": "NAT", "amount": "0.01", "strategy": "disconnect"},))
    state, use = None, {"NAT_MIN": D(0)}
    for rec in (
        SessionRecord("s", 1, "voice_seconds", start, {"destination": "+4930"}, total_usage=D("30.5")),
        SessionRecord("s", 3, "voice_seconds", start, {"destination": "+4930"}, total_usage=D(700)),
        SessionRecord("s", 5, "voice_seconds", start, {"destination": "+4930"}, usage=D(2), final=True),
    ):
        state, s = rate_session_record(plan, state, rec, bundle_used=use, rules=rules)
        use = {"NAT_MIN": use["NAT_MIN"] + s.bundle_units_used.get("NAT_MIN", D(0))}
    assert state.missing == (2,) and len(state.held) == 1 and state.disconnect_at is not None
    assert state.bundle_units_used == (("NAT_MIN", D(600)),)  # 60 (first block) + 540 of [60, 700)
    again = _through_json(state)
    assert again == state
    assert encode_state(again) == encode_state(state)


@settings(max_examples=100, deadline=None)
@given(session=sessions(), bundle_used=used, cut=st.integers(0, 7))
def test_rating_continues_from_a_stored_state(plan, session, bundle_used, cut):
    meter, number, start, _, records = session
    dims = {"destination": number} if number else {}

    def feed(store: bool):
        state, use, costs = None, dict(bundle_used), []
        for i, (usage, total) in enumerate(records):
            rec = SessionRecord("s", i + 1, meter, start, dims, usage=usage, total_usage=total)
            state, s = rate_session_record(plan, state, rec, bundle_used=use)
            for k, v in s.bundle_units_used.items():
                use[k] = use.get(k, D(0)) + v
            costs.append(s.cost)
            if store and i == cut:
                state = _through_json(state)
        return encode_state(state), costs

    assert feed(True) == feed(False)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"v": 2}, "v"),
        ({"cost_exact": ["1", "x", 1]}, "cost_exact"),
        ({"usage": None}, "usage"),
        ({"start": "yesterday"}, "start"),
        ({"held": [{}]}, "held"),
    ],
)
def test_bad_stored_state(plan, change, field):
    state, _ = rate_session_record(
        plan, None, SessionRecord("s", 1, "sms", berlin(2025, 3, 4, 10), {"destination": "+4930"}, usage=D(1)),
        bundle_used={},
    )  # fmt: skip
    doc = {**encode_state(state), **change}
    with pytest.raises(SessionError) as e:
        decode_state(doc)
    assert e.value.field == field
