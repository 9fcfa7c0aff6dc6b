"""A period close bills a telecom session (interim + final records) once, equal to what the stream rated.

The stream rates the records of one session as slices of one growing record (processor/sessions.py): the
connect fee once, the increment grid running on across records. Its rated rows carry `dimensions.session_id`
and `time` = the session's start. The close must not re-rate each row alone (that charges the connect fee and
rounds up an increment with every slice). Rows are inserted into the embedded ClickHouse as the stream writes
them, with the amounts the stream charged worked out by hand, and closed for real.

Plan (EUR, UTC): band `day` 08:00-19:00 every day, `night` otherwise; destination NAT (49, group national);
voice 60/60 with connect fee 0.10: day 0.06/min, night 0.03/min; rounding 4 decimals half up.
2026-11-03 is a Tuesday.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.aggregation.usage_query import period_records
from meterstream.invoice_emitter.close import close_period
from meterstream.invoice_emitter.telecom_lines import telecom_lines
from meterstream.rating.catalog import parse_catalog

PERIOD = "2026-11"
CATALOG = parse_catalog({
    "plans": [{"id": "voice", "currency": "EUR", "telecom": {
        "timezone": "UTC",
        "rounding": {"decimals": 4, "method": "half_up"},
        "time_bands": {"default": "night",
                       "periods": [{"band": "day", "days": ["all"], "start": "08:00", "end": "19:00"}]},
        "destinations": {"NAT": {"group": "national", "prefixes": ["49"]}},
        "rates": {
            "R_DAY": {"connect_fee": "0.10", "increments": "60/60", "groups": [{"price": "0.06", "per": 60}]},
            "R_NIGHT": {"connect_fee": "0.10", "increments": "60/60", "groups": [{"price": "0.03", "per": 60}]},
        },
        "meters": {"voice_seconds": {"kind": "voice", "rates": [
            {"destination": "NAT", "bands": {"day": "R_DAY", "night": "R_NIGHT"}}]}},
    }}],
    "assignments": [{"tenant": "t1", "customer": "*", "plan": "voice"}],
})  # fmt: skip
DAY, NIGHT = "voice_seconds/national/day", "voice_seconds/national/night"


def insert(client, db: str, customer: str, rows: list[tuple]) -> None:
    """Rows in arrival order: (start hh, mm, ss, seconds, streamed amount, session id or None, final)."""
    out, totals = [], Decimal(0)
    for offset, (hh, mm, ss, seconds, streamed, session, final) in enumerate(rows):
        dims = {"destination": "+4930123456"}
        if session:
            dims["session_id"] = session
            if final:
                dims["final"] = "true"
        totals += Decimal(seconds)
        start = datetime(2026, 11, 3, hh, mm, ss, tzinfo=UTC)
        out.append(["t1", uuid.uuid4().hex, customer, "", "voice_seconds", start, PERIOD, Decimal(seconds),
                    Decimal(streamed), totals, "EUR", "voice", DAY, dims, "", 0, offset])  # fmt: skip
    client.insert(f"{db}.rated_usage", out, column_names=list(RATED_COLUMNS))


def billed(line: dict) -> Decimal:
    """The units the billing increments billed (the line's pricing step on the document)."""
    (step,) = line["tiers"]
    assert step["kind"] == "billed_units"
    return Decimal(step["quantity"])


def lines(result, customer: str) -> dict[str, dict]:
    (doc,) = [d for d in result.invoices if d["customer"] == customer]
    return {line["line_key"]: line for line in doc["lines"] if "line_key" in line}


def test_a_session_in_two_records_is_one_call_equal_to_the_stream(chdb_client, db: str, tmp_path: Path) -> None:
    # 10:00:00, 30 s then 45 s more. Stream: slice 1 bills increment 1: 0.10 + 0.06 = 0.16; slice 2 (75 s)
    # starts increment 2: + 0.06. Session 0.22 = one 75 s record (0.10 + 2 x 0.06). Alone each: 0.16 + 0.16.
    insert(chdb_client, db, "c1", [(10, 0, 0, 30, "0.16", "S1", False), (10, 0, 0, 45, "0.06", "S1", True)])
    result = close_period(chdb_client, db, CATALOG, PERIOD, tmp_path / "inv", progress=False)
    (doc,) = result.invoices
    assert Decimal(doc["total"]) == Decimal("0.22")
    assert result.unreconciled == []
    (line,) = lines(result, "c1").values()
    assert line["line_key"] == DAY
    assert (Decimal(line["quantity"]), billed(line), line["events"]) == (75, 120, 1)
    assert Decimal(line["amount"]) == Decimal("0.22")
    (streamed_line,) = telecom_lines(CATALOG.plans["voice"], period_records(chdb_client, db, PERIOD, ["voice"]))[0]
    assert Decimal(streamed_line["streamed_amount"]) == Decimal("0.22")


def test_sessions_mixed_with_single_records_and_across_a_band(chdb_client, db: str, tmp_path: Path) -> None:
    # arrival order (offsets 0..5):
    #  S1 slice 30 s at 10:00:00: 0.16 | plain 61 s at 11:00: 2 increments, 0.10 + 0.12 = 0.22
    #  S2 slice 45 s at 18:59:30: increment 1 starts 18:59:30 (day): 0.10 + 0.06 = 0.16
    #  S1 slice 45 s (75 s, final): + 0.06 | plain 20 s at 22:00 (night): 0.10 + 0.03 = 0.13
    #  S2 slice 45 s (90 s, final): increment 2 starts 19:00:30 (night): + 0.03
    insert(chdb_client, db, "c1", [
        (10, 0, 0, 30, "0.16", "S1", False), (11, 0, 0, 61, "0.22", None, False),
        (18, 59, 30, 45, "0.16", "S2", False), (10, 0, 0, 45, "0.06", "S1", True),
        (22, 0, 0, 20, "0.13", None, False), (18, 59, 30, 45, "0.03", "S2", True),
    ])  # fmt: skip
    result = close_period(chdb_client, db, CATALOG, PERIOD, tmp_path / "inv", progress=False)
    assert result.unreconciled == []
    by_key = lines(result, "c1")
    day, night = by_key[DAY], by_key[NIGHT]
    # the document does not show streamed amounts: the close's lines before it do
    records = period_records(chdb_client, db, PERIOD, ["voice"])
    streamed = {x["line_key"]: x["streamed_amount"] for x in telecom_lines(CATALOG.plans["voice"], records)[0]}
    # day: S1 75 s (billed 120, 0.22); plain 61 s (120, 0.22); S2 usage 18:59:30-19:00 = 30 s, billed its first
    # increment 60 (0.16). Events: S1, the plain record and S2 (which starts in day): 3; streamed S2 whole 0.19
    assert (Decimal(day["quantity"]), billed(day), day["events"]) == (166, 300, 3)
    assert Decimal(day["amount"]) == Decimal("0.60")
    assert Decimal(streamed[DAY]) == Decimal("0.63")  # 0.22 + 0.22 + 0.19
    # night: plain 20 s (billed 60, 0.13); S2 60 s (its second increment 60, 0.03); one event, streamed 0.13
    assert (Decimal(night["quantity"]), billed(night), night["events"]) == (80, 120, 1)
    assert Decimal(night["amount"]) == Decimal("0.16")
    assert Decimal(streamed[NIGHT]) == Decimal("0.13")
    (doc,) = result.invoices
    assert Decimal(doc["total"]) == Decimal("0.76")  # = the six streamed amounts


def test_sessions_of_two_customers_with_the_same_id_are_apart(chdb_client, db: str, tmp_path: Path) -> None:
    # the id is a customer's: c1's S1 (30 + 45 s: 0.22) and c2's S1 (one 45 s record: 0.16) share nothing
    insert(chdb_client, db, "c1", [(10, 0, 0, 30, "0.16", "S1", False), (10, 0, 0, 45, "0.06", "S1", True)])
    insert(chdb_client, db, "c2", [(10, 0, 0, 45, "0.16", "S1", True)])
    result = close_period(chdb_client, db, CATALOG, PERIOD, tmp_path / "inv", progress=False)
    totals = {d["customer"]: Decimal(d["total"]) for d in result.invoices}
    assert totals == {"c1": Decimal("0.22"), "c2": Decimal("0.16")}
    assert result.unreconciled == []


def test_rounding_per_increment_is_replayed_as_the_stream_charged_it(chdb_client, db: str, tmp_path: Path) -> None:
    # plan `inc`: 60/30 at 0.05/min, no connect fee, rounding to 2 decimals half up, sessions rounded per
    # increment. A 120 s call as 60 + 30 + 30 s: increments 60 s = 0.05, 30 s = 0.025 -> 0.03, 30 s -> 0.03;
    # the stream charged 0.05, 0.03, 0.03 = 0.11. One record of 120 s rounded once would be 0.10 (0.05 + 0.025
    # + 0.025): the close must replay the session's rules, not rate its total as one plain record.
    catalog = parse_catalog({
        "plans": [{"id": "inc", "currency": "EUR", "telecom": {
            "timezone": "UTC",
            "rounding": {"decimals": 2, "method": "half_up"},
            "time_bands": {"default": "any", "periods": []},
            "destinations": {"NAT": {"group": "national", "prefixes": ["49"]}},
            "rates": {"R": {"increments": "60/30", "groups": [{"price": "0.05", "per": 60}]}},
            "meters": {"voice_seconds": {"kind": "voice", "rates": [{"destination": "NAT", "rate": "R"}]}},
            "sessions": {"rounding": "per_increment"},
        }}],
        "assignments": [{"tenant": "t1", "customer": "*", "plan": "inc"}],
    })  # fmt: skip
    rows = [["t1", uuid.uuid4().hex, "c1", "", "voice_seconds", datetime(2026, 11, 3, 10, tzinfo=UTC), PERIOD,
             Decimal(q), Decimal(a), Decimal(0), "EUR", "inc", "voice_seconds/national/any",
             {"destination": "+4930123456", "session_id": "S9", **({"final": "true"} if i == 2 else {})}, "", 0, i]
            for i, (q, a) in enumerate([("60", "0.05"), ("30", "0.03"), ("30", "0.03")])]  # fmt: skip
    chdb_client.insert(f"{db}.rated_usage", rows, column_names=list(RATED_COLUMNS))
    result = close_period(chdb_client, db, catalog, PERIOD, tmp_path / "inv", progress=False)
    (doc,) = result.invoices
    assert Decimal(doc["total"]) == Decimal("0.11")
    assert result.unreconciled == []
    (line,) = lines(result, "c1").values()
    assert (Decimal(line["quantity"]), billed(line), line["events"]) == (120, 120, 1)
