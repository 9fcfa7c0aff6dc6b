"""A telecom customer whose calls name their users, closed for real (tests/invoice_emitter/test_telecom_subjects.py,
tests/analytics/test_cost_per_user_telecom.py; loaded with `by_path.load`).

Catalog-file plan `telco` (EUR, UTC, one band `any`): national calls (49...) in 60/60 increments at 0.10 per
minute (mobiles, 4917...: 0.30), no connect fee; SMS 0.09 each; each record rounded to 4 decimals half-up.
Tenant `telco`, customer `sub-3`. Lines: `voice_seconds/national/any` and `sms/sms/any` (`TELECOM`: the same
telecom plan for a store plan).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.rating.catalog import parse_catalog

TENANT, CUSTOMER = "telco", "sub-3"
VOICE, SMS = "voice_seconds/national/any", "sms/sms/any"
TELECOM = {
    "timezone": "UTC",
    "rounding": {"decimals": 4, "method": "half_up"},
    "time_bands": {"default": "any", "periods": []},
    "destinations": {"NAT": {"group": "national", "prefixes": ["49"]},
                     "MOB": {"group": "mobile", "prefixes": ["4917"]}},
    "rates": {"R": {"increments": "60/60", "groups": [{"price": "0.10", "per": 60}]},
              "R_MOB": {"increments": "60/60", "groups": [{"price": "0.30", "per": 60}]},
              "R_SMS": {"groups": [{"price": "0.09", "per": 1}]}},
    "meters": {"voice_seconds": {"kind": "voice", "rates": [{"destination": "NAT", "rate": "R"},
                                                            {"destination": "MOB", "rate": "R_MOB"}]},
               "sms": {"kind": "sms", "rates": [{"destination": "*any", "group": "sms", "rate": "R_SMS"}]}},
}  # fmt: skip
CATALOG = parse_catalog({"plans": [{"id": "telco", "currency": "EUR", "telecom": TELECOM}],
                         "assignments": [{"tenant": TENANT, "customer": "*", "plan": "telco"}]})  # fmt: skip

_offset = [0]  # arrival order across inserts (the close re-rates in it)


def insert(client, db: str, period: str, rows: list[tuple[str, str, str, str]]) -> None:  # type: ignore[no-untyped-def]
    """Rated rows of `period` (event time: its 12th at 10:00 UTC), in arrival order: (subject, meter, quantity,
    streamed amount)."""
    at = datetime(int(period[:4]), int(period[5:]), 12, 10, tzinfo=UTC)
    out = []
    for subject, meter, quantity, streamed in rows:
        _offset[0] += 1
        line = VOICE if meter == "voice_seconds" else SMS
        out.append([TENANT, uuid.uuid4().hex, CUSTOMER, subject, meter, at, period, Decimal(quantity),
                    Decimal(streamed), Decimal(0), "EUR", "telco", line, {"destination": "+4933123456"}, "", 0,
                    _offset[0]])  # fmt: skip
    client.insert(f"{db}.rated_usage", out, column_names=list(RATED_COLUMNS))
