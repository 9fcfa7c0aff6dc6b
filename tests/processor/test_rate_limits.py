"""What the rated_usage columns can hold, checked at rating; exact running totals; the event time window."""

from __future__ import annotations

from decimal import Decimal

import orjson

from meterstream.processor.rate import cumulative_key
from meterstream.processor.step import Kind, Position, process
from meterstream.rating.catalog import parse_catalog
from meterstream.schemas.event import TimeWindow

CATALOG = parse_catalog(
    {
        "version": 1,
        "plans": [
            {
                "id": "p",
                "currency": "USD",
                "meters": {
                    "units": {"model": "unit", "unit_amount": "1"},  # amount = quantity
                    "dear": {"model": "unit", "unit_amount": "100000000"},  # 10^8 per unit
                },
            }
        ],
        "assignments": [{"tenant": "t", "customer": "*", "plan": "p"}],
    }
)
WINDOW = 35 * 86_400_000
T = "2026-10-05T00:00:00Z"
RECEIVED = 1_791_158_400_000  # 2026-10-05T00:00:00Z
KEY = cumulative_key("t", "c", "units", "2026-10")


def ev(i: str, quantity: object, meter: str = "units", t: str = T) -> bytes:
    return orjson.dumps({"id": i, "tenant": "t", "customer": "c", "meter": meter, "quantity": quantity, "time": t})


def run(state: dict, value: bytes, offset: int = 7, timestamp_ms: int | None = None, now_ms: int = RECEIVED, **kw):
    return process(CATALOG, state, value, Position("usage", 0, offset, b"t/c", timestamp_ms), now_ms, WINDOW, **kw)


def test_running_total_is_exact_where_the_default_28_digit_context_would_round() -> None:
    # 10^25 + 10^-12 has 38 significant digits; Python's default context keeps 28 and returns 10^25.
    state = {KEY: ["10000000000000000000000000", 3]}
    out = run(state, ev("e1", "0.000000000001"))
    assert out.kind is Kind.RATED
    assert out.rated["cumulative"] == "10000000000000000000000000.000000000001"
    assert out.rated["amount"] == "0.000000000001"  # unit price 1: the amount is the quantity
    assert state[KEY] == ["10000000000000000000000000.000000000001", 7]


def test_running_total_beyond_decimal_38_12_is_dead_lettered_at_rating() -> None:
    nines = "9" * 26
    state = {KEY: [nines, 3]}
    out = run(state, ev("e1", "1"))  # 10^26: 27 integer digits, ClickHouse would refuse the insert
    assert out.kind is Kind.DEAD_LETTER
    dl = out.dead_letter
    assert (dl["stage"], dl["field"]) == ("rate", "quantity")
    assert "26 integer digits" in dl["reason"] and "100000000000000000000000000" in dl["reason"]
    assert state == {KEY: [nines, 3]}  # nothing remembered, nothing moved: a replay after a fix rates it
    fits = run(state, ev("e2", "0.999999999999"), offset=8)  # up to Decimal(38, 12)'s largest value
    assert fits.kind is Kind.RATED and fits.rated["cumulative"] == nines + ".999999999999"


def test_amount_beyond_decimal_38_18_is_dead_lettered_at_rating() -> None:
    state: dict = {}
    # 10^13 units x 10^8 = 10^21: 22 integer digits, rated_usage.amount holds 20
    out = run(state, ev("e1", "10000000000000", meter="dear"))
    assert out.kind is Kind.DEAD_LETTER
    assert (out.dead_letter["field"], out.dead_letter["stage"]) == ("amount", "rate")
    reason = out.dead_letter["reason"]
    assert "1000000000000000000000 USD" in reason and "20 integer digits" in reason
    assert state == {}
    # 999,999,999,999 x 10^8 = 99,999,999,999,900,000,000: 20 digits, fits
    ok = run(state, ev("e2", "999999999999", meter="dear"), offset=8)
    assert ok.kind is Kind.RATED and Decimal(ok.rated["amount"]) == Decimal("99999999999900000000")


def test_negative_json_integer_quantity_is_a_dead_letter_not_a_credit() -> None:
    state: dict = {}
    for i, quantity in enumerate([-1, -1.0, "-1", -(2**63)]):
        out = run(state, ev(f"n{i}", quantity), offset=i)
        assert out.kind is Kind.DEAD_LETTER, quantity
        assert (out.dead_letter["stage"], out.dead_letter["field"], out.dead_letter["reason"]) == (
            "parse",
            "quantity",
            "must be >= 0",
        )
    assert state == {}


DAY = 86_400_000


def test_time_is_judged_against_the_kafka_timestamp_so_a_replay_decides_the_same() -> None:
    window = TimeWindow.of(max_age_days=92, max_future_minutes=60)
    old = ev("e1", "1", t="2026-07-04T23:59:59.999Z")  # 92 days + 1 ms before RECEIVED
    for now in (RECEIVED, RECEIVED - 10 * DAY, RECEIVED + 10 * DAY):  # the batch clock of a first run, replays
        out = run({}, old, timestamp_ms=RECEIVED, now_ms=now, time_window=window)
        assert out.kind is Kind.DEAD_LETTER
        assert out.dead_letter["field"] == "time"
        assert out.dead_letter["reason"] == "more than 92 days before the event was received"
    edge = ev("e2", "1", t="2026-07-05T00:00:00Z")  # exactly 92 days: accepted, whatever the batch clock says
    for now in (RECEIVED, RECEIVED + 10 * DAY):
        assert run({}, edge, timestamp_ms=RECEIVED, now_ms=now, time_window=window).kind is Kind.RATED
    ahead = ev("e3", "1", t="2026-10-05T01:00:00.001Z")
    out = run({}, ahead, timestamp_ms=RECEIVED, time_window=window)
    assert out.kind is Kind.DEAD_LETTER
    assert out.dead_letter["reason"] == "more than 60 minutes after the event was received"


def test_without_a_kafka_timestamp_the_batch_clock_is_the_reference() -> None:
    window = TimeWindow.of(max_age_days=92, max_future_minutes=60)
    edge = ev("e1", "1", t="2026-07-05T00:00:00Z")
    assert run({}, edge, timestamp_ms=None, now_ms=RECEIVED, time_window=window).kind is Kind.RATED
    assert run({}, edge, timestamp_ms=-1, now_ms=RECEIVED + 1, time_window=window).kind is Kind.DEAD_LETTER
    assert run({}, edge, now_ms=RECEIVED + 365 * DAY).kind is Kind.RATED  # no window given: form only
