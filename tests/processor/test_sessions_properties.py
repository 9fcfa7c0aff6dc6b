"""Any cut of a call, sent as session records through the processor's specification (`step.process`) on a real
RocksDB PartitionStore with commits between records, charges in all what one record of the total costs
(`rate_cdr`), also when the customer's bundle was partly used by an earlier single record of the period."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from tempfile import TemporaryDirectory

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sessions import CATALOG

from meterstream.processor.step import Kind, Position, process
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.rating.telecom import rate_cdr
from meterstream.schemas.event import format_time

NOW = 1_793_700_000_000
BASE = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)  # a Tuesday


@st.composite
def call(draw: st.DrawFn):
    start = BASE + timedelta(minutes=draw(st.integers(0, 24 * 60 - 1)), seconds=draw(st.integers(0, 59)))
    total = Decimal(draw(st.integers(0, 3 * 3600))) / draw(st.sampled_from([1, 1, 10]))
    cuts = sorted(draw(st.sets(st.decimals(0, total, places=1, allow_nan=False), max_size=6)))
    bounds = [Decimal(0), *cuts, total]
    slices = list(pairwise(bounds))
    modes = [draw(st.booleans()) for _ in slices]  # True: the record carries total_usage
    before = draw(st.sampled_from([None, "0", "120", "290", "400"]))  # an earlier single CDR (bundled customer)
    customer = draw(st.sampled_from(["line-1", "bundled"]))
    commits = [draw(st.booleans()) for _ in slices]
    return start, total, slices, modes, before, customer, commits


def _msg(i: int, customer: str, start: datetime, quantity: Decimal, session: dict | None) -> bytes:
    doc = {"id": f"e{i}", "tenant": "telco", "customer": customer, "meter": "voice_seconds",
           "quantity": format(quantity, "f"), "time": format_time(start + timedelta(hours=4)),
           "dimensions": {"destination": "+4930123456"}}  # fmt: skip
    if session is not None:
        doc["session"] = session
    return orjson.dumps(doc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call())
def test_any_cut_of_a_call_costs_what_one_record_costs(case) -> None:
    start, total, slices, modes, before, customer, commits = case
    plan = CATALOG.plans["telb" if customer == "bundled" else "tel"].telecom
    used: dict[str, Decimal] = {}
    with TemporaryDirectory() as tmp:
        store = PartitionStore(Path(tmp) / "p0")
        try:
            state = BatchState(store)
            offset = 0
            if before is not None:
                out = process(CATALOG, state, _msg(0, customer, start, Decimal(before), None),
                              Position("usage", 0, offset, None), NOW, 10**12)  # fmt: skip
                assert out.kind is Kind.RATED
                one = rate_cdr(plan, meter="voice_seconds", quantity=Decimal(before), start=start,
                               dimensions={"destination": "+4930123456"}, bundle_used={})  # fmt: skip
                used = dict(one.bundle_units_used)
                offset += 1
            charged = Decimal(0)
            for n, ((a, b), as_total, commit) in enumerate(zip(slices, modes, commits, strict=True), 1):
                session = {"id": "call-1", "sequence": n, "start": format_time(start), "final": n == len(slices)}
                if as_total:
                    session["total_usage"] = True
                value = _msg(offset, customer, start, b if as_total else b - a, session)
                out = process(CATALOG, state, value, Position("usage", 0, offset, None), NOW, 10**12)
                assert out.kind is Kind.RATED, out
                assert Decimal(out.rated["quantity"]) == b - a
                charged += Decimal(out.rated["amount"])
                offset += 1
                if commit:
                    state.commit(offset, Counter())
                    state = BatchState(store)
        finally:
            store.close()
    whole = rate_cdr(plan, meter="voice_seconds", quantity=total, start=start,
                     dimensions={"destination": "+4930123456"}, bundle_used=used)  # fmt: skip
    assert charged == whole.cost
