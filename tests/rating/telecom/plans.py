"""A small, round-numbered telecom plan for hand-computed test cases.

Europe/Berlin.  Bands: peak Mon-Fri 08:00-19:00, weekend Sat/Sun/holiday,
offpeak otherwise.  Voice to NAT (49...) is 60/1 at 0.10 / 0.04 / 0.02 per minute
(peak / offpeak / weekend); MOB (4917...) 60/60 at 0.30/min in every band;
MOB_PREMIUM (491709...) is declared but not priced.  INTL (44...) has a 0.50
connect fee, 60/60, 1.20 for the first minute then 0.60/min, capped at 3.00.
SMS 0.09 each.  Data 0.05/MB peak, 0.01/MB otherwise, 1/1 MB increments.
Bundle NAT_MIN: 10 national minutes (600 s).
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

BERLIN = ZoneInfo("Europe/Berlin")

SECTION: dict[str, Any] = {
    "timezone": "Europe/Berlin",
    "rounding": {"decimals": 4, "method": "half_up"},
    "holidays": ["2025-12-25"],
    "time_bands": {
        "default": "offpeak",
        "periods": [
            {"band": "peak", "days": ["weekdays"], "start": "08:00", "end": "19:00"},
            {"band": "weekend", "days": ["sat", "sun", "holiday"]},
        ],
    },
    "destinations": {
        "NAT": {"group": "national", "prefixes": ["49"]},
        "MOB": {"group": "mobile", "prefixes": ["4917"]},
        "MOB_PREMIUM": {"group": "mobile", "prefixes": ["491709"]},
        "INTL": {"group": "international", "prefixes": ["+44"]},
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
                {"destination": "INTL", "rate": "R_INTL", "max_cost": "3.00"},
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
    "bundles": [{"id": "NAT_MIN", "meter": "voice_seconds", "amount": 10, "unit": "minutes", "groups": ["national"]}],
}


def section() -> dict[str, Any]:
    """A fresh copy of the test section, safe to modify."""
    return copy.deepcopy(SECTION)


def berlin(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    """A Berlin wall-clock time (fold=0)."""
    return datetime(y, mo, d, h, mi, s, tzinfo=BERLIN)
