"""Telecom lines of a period close, checked against invoice lines worked out by hand.

The rules are docs/telecom.md (destination by longest prefix, time bands in the plan's zone, billing
increments laid from the start, each block priced by the band it starts in, bundles covering billed
units in arrival order, one rounding per record to 4 decimals half-up). The close groups the records'
per-band amounts by `meter/destination group/band`, rounds each line once to the cent (half away from
zero) and the invoice total is the sum of the rounded lines.

Every expected figure below was computed by hand from those rules; none was taken from running the code.

The plan (EUR, Europe/Berlin; November 2026 is CET = UTC+1):
  bands     peak Mon-Fri 08:00-19:00, weekend Sat/Sun, offpeak otherwise
  NAT  49   voice 60/1: peak 0.10/min, offpeak 0.04/min, weekend 0.02/min      (group national)
  MOB  4917 voice 60/60 0.30/min in every band                                  (group mobile)
  INTL 44   voice 60/60, connect 0.50, 1.20 for the first minute, then 0.60/min (group international)
  SMS       0.09 per message (group sms)
  data      per MB (10^6 bytes), 1/1 MB increments: peak 0.05, otherwise 0.01  (group data)
  bundles   NAT_MIN: 4 minutes = 240 s of national voice;  SMS_FREE: 1 message
Calendar: 2026-11-03 Tue, 04 Wed, 05 Thu, 06 Fri, 07 Sat.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from meterstream.aggregation.usage_query import UsageRecord
from meterstream.invoice_emitter.document import build_invoice
from meterstream.invoice_emitter.telecom_lines import telecom_lines
from meterstream.rating.catalog import Plan, parse_catalog

BERLIN = ZoneInfo("Europe/Berlin")

TELECOM: dict[str, Any] = {
    "timezone": "Europe/Berlin",
    "rounding": {"decimals": 4, "method": "half_up"},
    "time_bands": {
        "default": "offpeak",
        "periods": [
            {"band": "peak", "days": ["weekdays"], "start": "08:00", "end": "19:00"},
            {"band": "weekend", "days": ["sat", "sun"]},
        ],
    },
    "destinations": {
        "NAT": {"group": "national", "prefixes": ["49"]},
        "MOB": {"group": "mobile", "prefixes": ["4917"]},
        "INTL": {"group": "international", "prefixes": ["44"]},
    },
    "rates": {
        "R_PEAK": {"increments": "60/1", "groups": [{"price": "0.10", "per": 60}]},
        "R_OFF": {"increments": "60/1", "groups": [{"price": "0.04", "per": 60}]},
        "R_WE": {"increments": "60/1", "groups": [{"price": "0.02", "per": 60}]},
        "R_MOB": {"increments": "60/60", "groups": [{"price": "0.30", "per": 60}]},
        "R_INTL": {
            "connect_fee": "0.50",
            "increments": "60/60",
            "groups": [{"from": 0, "price": "1.20", "per": 60}, {"from": 60, "price": "0.60", "per": 60}],
        },
        "R_SMS": {"groups": [{"price": "0.09", "per": 1}]},
        "R_DATA_PEAK": {"increments": "1/1", "groups": [{"price": "0.05", "per": 1}]},
        "R_DATA_OFF": {"increments": "1/1", "groups": [{"price": "0.01", "per": 1}]},
    },
    "meters": {
        "voice_seconds": {
            "kind": "voice",
            "rates": [
                {"destination": "NAT", "bands": {"peak": "R_PEAK", "offpeak": "R_OFF", "weekend": "R_WE"}},
                {"destination": "MOB", "rate": "R_MOB"},
                {"destination": "INTL", "rate": "R_INTL"},
            ],
        },
        "sms": {"kind": "sms", "rates": [{"destination": "*any", "group": "sms", "rate": "R_SMS"}]},
        "data_bytes": {
            "kind": "data",
            "unit": "MB",
            "rates": [
                {
                    "destination": "*any",
                    "group": "data",
                    "bands": {"peak": "R_DATA_PEAK", "offpeak": "R_DATA_OFF", "weekend": "R_DATA_OFF"},
                }
            ],
        },
    },
    "bundles": [
        {"id": "NAT_MIN", "meter": "voice_seconds", "amount": 4, "unit": "minutes", "groups": ["national"]},
        {"id": "SMS_FREE", "meter": "sms", "amount": 1, "unit": "messages"},
    ],
}


def _plan() -> Plan:
    catalog = parse_catalog(
        {
            "plans": [{"id": "mobile-s", "currency": "EUR", "telecom": TELECOM}],
            "assignments": [{"tenant": "telco", "customer": "*", "plan": "mobile-s"}],
        }
    )
    return catalog.plans["mobile-s"]


def _rec(meter: str, quantity: int, when: tuple[int, ...], destination: str | None, streamed: str) -> UsageRecord:
    dims = {"destination": destination} if destination else {"apn": "internet"}
    start = datetime(2026, 11, *when, tzinfo=BERLIN)
    return UsageRecord("telco", "acct-1", meter, Decimal(quantity), start, dims, Decimal(streamed))


# The records in ARRIVAL order (the order the stream rated them). R1 arrives before R2 although it was
# made a day later: bundles are consumed in arrival order, so R1 takes the bundle first.
R1 = _rec("voice_seconds", 130, (4, 18, 59, 20), "+4930111111", "0")  # Wed, national, crosses 19:00
R2 = _rec("voice_seconds", 200, (3, 18, 58, 0), "+4930222222", "0.07")  # Tue, national, crosses 19:00
RECORDS = [
    R1,
    R2,
    _rec("voice_seconds", 61, (5, 10, 0, 0), "+4940333333", "0.1017"),  # R3 Thu peak, national
    _rec("voice_seconds", 61, (5, 10, 5, 0), "+4940333333", "0.1017"),  # R4 Thu peak, national
    _rec("voice_seconds", 61, (5, 21, 0, 0), "+4940333333", "0.0407"),  # R5 Thu offpeak, national
    _rec("voice_seconds", 61, (7, 12, 0, 0), "+4917012345", "0.60"),  # R6 Sat, mobile
    _rec("voice_seconds", 150, (6, 18, 59, 30), "+442071234567", "2.90"),  # R7 Fri, international, crosses 19:00
    _rec("sms", 1, (3, 12, 0, 0), "+4917099999", "0"),  # R8 Tue peak
    _rec("sms", 1, (3, 20, 0, 0), "+4917099999", "0.09"),  # R9 Tue offpeak
    _rec("data_bytes", 2_500_000, (3, 18, 59, 0), None, "0.15"),  # R10 Tue peak, runs past 19:00
]

# Hand calculation, record by record (bundle NAT_MIN starts at 240 s, SMS_FREE at 1 message).
#
# R1  Wed 18:59:20 + 130 s, NAT. Peak until 19:00:00 = 40 s: usage peak [0,40), offpeak [40,130).
#     Increments 60/1 of R_PEAK (the rate at the start): one 60 s block starting at 0 (in peak), then
#     1 s steps at 60..129 (in offpeak). Billed 130 = peak 60 + offpeak 70.
#     NAT_MIN 240 left >= 130: all covered, amount 0. NAT_MIN left 240 - 130 = 110.
#     peak: usage 40, billed 60 (bundle 60), 0       offpeak: usage 90, billed 70 (bundle 70), 0
#     cost 0.0000; its event counts on its first segment's line, national/peak.
# R2  Tue 18:58:00 + 200 s, NAT. Peak [0,120), offpeak [120,200). Billed: block 0 + steps 60..119 in
#     peak = 120, steps 120..199 in offpeak = 80; total 200.
#     NAT_MIN 110 left: covers billed [0,110) (peak); NAT_MIN left 0.
#     peak covered: usage 110, billed 110, bundle 110, 0
#     peak charged: usage 10, billed 10: 10 x 0.10/60 = 0.016666..
#     offpeak charged: usage 80, billed 80: 80 x 0.04/60 = 0.053333..
#     precise 1.00/60 + 3.20/60 = 4.20/60 = 0.07 -> cost 0.0700;
#     per band (4 decimals, half-up): peak 0.0167, offpeak 0.0533 (sum 0.0700, nothing to absorb).
# R3  Thu 10:00 + 61 s, NAT, peak, bundle empty. 60/1: 60 + 1 = 61 billed. 61 x 0.10/60 = 0.101666..
#     -> 0.1017.
# R4  the same: 0.1017.
# R5  Thu 21:00 + 61 s, NAT, offpeak: 61 x 0.04/60 = 0.040666.. -> 0.0407.
# R6  Sat 12:00 + 61 s, MOB (4917 is longer than 49), weekend. 60/60: 61 s -> 2 blocks = 120 s billed.
#     NAT_MIN covers only group national. 120 x 0.30/60 = 0.6000.
# R7  Fri 18:59:30 + 150 s, INTL (one rate in every band). Usage peak [0,30), offpeak [30,150).
#     60/60 blocks start at 0 (peak), 60 and 120 (offpeak): billed 180 = peak 60 + offpeak 120.
#     Rate groups by elapsed usage: block 0 at 1.20/min, blocks 60 and 120 at 0.60/min.
#     peak: connect 0.50 + 1.20 = 1.7000;  offpeak: 0.60 + 0.60 = 1.2000;  cost 2.9000.
# R8  SMS Tue 12:00 (peak): SMS_FREE 1 left -> covered, 0. SMS_FREE left 0.
# R9  SMS Tue 20:00 (offpeak): 1 x 0.09 = 0.0900.
# R10 data Tue 18:59 (peak, the band at its start, although the session runs past 19:00):
#     2,500,000 bytes = 2.5 MB -> 1/1 MB increments -> 3 MB billed x 0.05 = 0.1500.
#
# Lines (quantity = real usage in base units; precise = sum of the records' 4-decimal band amounts;
# amount = precise rounded once to the cent, half away from zero):
#   data_bytes/data/peak                 R10: qty 2,500,000, 1 event, bundle 0, 0.1500 -> 0.15
#   sms/sms/offpeak                      R9:  qty 1, 1 event, bundle 0, 0.0900 -> 0.09
#   sms/sms/peak                         R8:  qty 1, 1 event, bundle 1, 0 -> 0.00
#   voice_seconds/international/offpeak  R7:  qty 120, 0 events (R7 starts in peak), 1.2000 -> 1.20
#   voice_seconds/international/peak     R7:  qty 30, 1 event, 1.7000 -> 1.70
#   voice_seconds/mobile/weekend         R6:  qty 61, 1 event, 0.6000 -> 0.60
#   voice_seconds/national/offpeak       R1 90 + R2 80 + R5 61 = 231 s; 1 event (R5);
#                                        bundle R1 70; 0 + 0.0533 + 0.0407 = 0.0940 -> 0.09
#   voice_seconds/national/peak          R1 40 + R2 (110 + 10) + R3 61 + R4 61 = 282 s; 4 events
#                                        (R1..R4); bundle R1 60 + R2 110 = 170;
#                                        0 + 0.0167 + 0.1017 + 0.1017 = 0.2201 -> 0.22
#   bundle units 60 + 70 + 110 = 240 = NAT_MIN: the allowance is used exactly once.
# Total: 0.15 + 0.09 + 0.00 + 1.20 + 1.70 + 0.60 + 0.09 + 0.22 = 4.05
# Re-rated (sum of record costs): 0.07 + 0.1017 + 0.1017 + 0.0407 + 0.60 + 2.90 + 0.09 + 0.15 = 4.0541
#   (= the precise line amounts 0.15 + 0.09 + 1.20 + 1.70 + 0.60 + 0.0940 + 0.2201 = 4.0541).
EXPECTED = {
    # line key: (quantity, events, bundle units, precise amount, amount)
    "data_bytes/data/peak": ("2500000", 1, "0", "0.1500", "0.15"),
    "sms/sms/offpeak": ("1", 1, "0", "0.0900", "0.09"),
    "sms/sms/peak": ("1", 1, "1", "0", "0.00"),
    "voice_seconds/international/offpeak": ("120", 0, "0", "1.2000", "1.20"),
    "voice_seconds/international/peak": ("30", 1, "0", "1.7000", "1.70"),
    "voice_seconds/mobile/weekend": ("61", 1, "0", "0.6000", "0.60"),
    "voice_seconds/national/offpeak": ("231", 1, "70", "0.0940", "0.09"),
    "voice_seconds/national/peak": ("282", 4, "170", "0.2201", "0.22"),
}


Line = tuple[str, int, Decimal, Decimal, Decimal]  # quantity, events, bundle units, precise amount, amount


def _by_key(lines: list[dict[str, Any]]) -> dict[str, Line]:
    return {
        line["line_key"]: (
            line["quantity"],
            line["events"],
            Decimal(line["bundle_units"]),
            Decimal(line["precise_amount"]),
            Decimal(line["amount"]),
        )
        for line in lines
    }


def _expected(table: dict[str, tuple[str, int, str, str, str]]) -> dict[str, Line]:
    return {k: (q, n, Decimal(b), Decimal(p), Decimal(a)) for k, (q, n, b, p, a) in table.items()}


def test_telecom_lines_match_the_hand_calculation() -> None:
    lines, rerated, streamed = telecom_lines(_plan(), RECORDS)
    assert _by_key(lines) == _expected(EXPECTED)
    assert [line["line_key"] for line in lines] == sorted(EXPECTED)  # one line per key, in key order
    assert all(len(line["amount"].split(".")[1]) == 2 for line in lines)  # rounded to the cent (EUR)
    assert rerated == Decimal("4.0541")
    assert streamed == Decimal("4.0541")  # the streamed amounts given above are the hand costs
    line = next(x for x in lines if x["line_key"] == "voice_seconds/national/peak")
    assert (line["meter"], line["description"]) == ("voice_seconds", "voice seconds: national, peak")


def test_invoice_total_is_the_sum_of_the_cent_rounded_lines() -> None:
    plan = _plan()
    lines, _, _ = telecom_lines(plan, RECORDS)
    doc = build_invoice("telco", "acct-1", "2026-11", plan, [], lines)
    # 0.15 + 0.09 + 0.00 + 1.20 + 1.70 + 0.60 + 0.09 + 0.22 (the cent-rounded lines, see above)
    assert Decimal(doc["total"]) == Decimal("4.05")
    assert sum(Decimal(x["amount"]) for x in doc["lines"]) == Decimal("4.05")
    assert [x["line_no"] for x in doc["lines"]] == list(range(1, 9))


def test_bundle_is_consumed_in_arrival_order_not_call_time_order() -> None:
    """R2 arriving before R1 (call-time order) moves the charged part of the national calls.

    R2 first: 200 billed <= 240 -> covered, NAT_MIN left 40.
    R1 then: billed peak block [0,60): [0,40) covered; [40,60) charged 20 x 0.10/60 = 0.033333..;
             offpeak [60,130) charged 70 x 0.04/60 = 0.046666..; precise 0.08 -> cost 0.0800,
             per band: peak 0.0333, offpeak 0.0467 (sum 0.0800).
    national/peak:    R2 0 + R1 0.0333 + R3 0.1017 + R4 0.1017 = 0.2367 -> 0.24;
                      bundle R2 120 + R1 40 = 160; usage R2 120 + R1 40 + 61 + 61 = 282 (unchanged)
    national/offpeak: R2 0 + R1 0.0467 + R5 0.0407 = 0.0874 -> 0.09; bundle R2 80
    total 4.05 - 0.22 + 0.24 = 4.07; re-rated 4.0541 - 0.07 + 0.08 = 4.0641.
    """
    records = [R2, R1, *RECORDS[2:]]
    lines, rerated, _ = telecom_lines(_plan(), records)
    got = _by_key(lines)
    assert got["voice_seconds/national/peak"] == ("282", 4, Decimal(160), Decimal("0.2367"), Decimal("0.24"))
    assert got["voice_seconds/national/offpeak"] == ("231", 1, Decimal(80), Decimal("0.0874"), Decimal("0.09"))
    assert sum(x[4] for x in got.values()) == Decimal("4.07")
    assert rerated == Decimal("4.0641")


def test_no_records_no_lines() -> None:
    assert telecom_lines(_plan(), []) == ([], Decimal(0), Decimal(0))
