"""Properties over random records: the pieces always add up, and the fast path equals the general one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from meterstream.rating.money import ROUNDING
from meterstream.rating.telecom import rate_cdr
from meterstream.rating.telecom.rater import _rate_general
from meterstream.rating.telecom.rounding import round_amount
from meterstream.rating.telecom.timebands import to_us

D = Decimal
YEAR = datetime(2025, 1, 1, tzinfo=UTC)

starts = st.integers(0, 365 * 86400 * 1_000_000 - 1).map(lambda us: YEAR + timedelta(microseconds=us))
durations = st.one_of(
    st.integers(0, 400).map(D),
    st.integers(0, 200_000).map(D),
    st.decimals(min_value=0, max_value=5000, places=3, allow_nan=False, allow_infinity=False),
)
numbers = st.sampled_from(["+4930123", "+4917123", "+491709", "+44207"])
used = st.one_of(st.just({}), st.integers(0, 700).map(lambda n: {"NAT_MIN": D(n)}))


@settings(max_examples=300, deadline=None)
@given(start=starts, seconds=durations, number=numbers, bundle_used=used)
def test_pieces_add_up(plan, start, seconds, number, bundle_used):
    r = rate_cdr(plan, meter="voice_seconds", quantity=seconds, start=start,
                 dimensions={"destination": number}, bundle_used=bundle_used)  # fmt: skip
    assert sum(s.usage for s in r.segments) == seconds
    assert sum(s.billed for s in r.segments) == r.billed >= seconds
    assert r.cost == round_amount(r.precise_cost, D("0.0001"), "half_up")
    assert sum(a for _, a in r.lines) == r.cost
    assert all(a >= 0 for _, a in r.lines)
    assert sum(s.connect_fee for s in r.segments) in (0, D("0.50"))
    if r.capped:
        assert r.precise_cost == D("3.00")
    left = D(600) - bundle_used.get("NAT_MIN", D(0))
    assert sum(r.bundle_units_used.values(), D(0)) <= max(left, D(0))
    assert all(s.amount == 0 for s in r.segments if s.bundle_id)
    assert [s.start for s in r.segments] == sorted(s.start for s in r.segments)


@settings(max_examples=200, deadline=None)
@given(start=starts, seconds=st.integers(0, 3000), extra=st.integers(1, 600), number=numbers, bundle_used=used)
def test_longer_never_cheaper(plan, start, seconds, extra, number, bundle_used):
    def cost(q: int) -> Decimal:
        return rate_cdr(plan, meter="voice_seconds", quantity=D(q), start=start,
                        dimensions={"destination": number}, bundle_used=bundle_used).precise_cost  # fmt: skip

    assert cost(seconds) <= cost(seconds + extra)


@settings(max_examples=300, deadline=None)
@given(start=starts, seconds=durations, number=numbers, bundle_used=used,
       meter=st.sampled_from(["voice_seconds", "sms", "data_bytes"]))  # fmt: skip
def test_fast_path_matches_general_path(plan, start, seconds, number, bundle_used, meter):
    if meter == "sms":
        seconds = seconds.to_integral_value()
    dims = {"destination": number}
    fast = rate_cdr(plan, meter=meter, quantity=seconds, start=start, dimensions=dims, bundle_used=bundle_used)
    cp = plan.compiled
    cm = cp.meters[meter]
    dest = cm.prefixes.match(number)
    t_us = to_us(start)
    if cm.kind == "voice":
        spans = cp.schedule.split(t_us, seconds)
    else:
        spans = [(D(0), seconds, cp.schedule.band_at(t_us), t_us)]
    rate = dest.rates[spans[0][2]]
    from meterstream.rating.telecom.increments import grid_ceil

    billed = grid_ceil(seconds, rate.first, rate.step)
    connect = rate.connect_fee if billed else D(0)
    with localcontext(ROUNDING):  # the context rate_cdr runs in
        general = _rate_general(
            cp, meter, dest, seconds, start, cm.kind == "voice", spans, bundle_used, billed, connect
        )
    assert fast == general
