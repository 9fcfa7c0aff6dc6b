"""The flat-rate voice plan the invoice tests price telecom lines with (tests/docs/test_invoice_reference.py,
tests/invoice_emitter/test_line_text.py): EUR, UTC, one band; national calls (49...) 60/60 at 0.10 per minute,
no connect fee; each record rounded to 4 decimals half-up. So a 95 s call bills 2 minutes = 0.20."""

from __future__ import annotations

from typing import Any


def mobile_plan() -> dict[str, Any]:
    """The plan `mobile` as a catalog entry (a fresh dict each call)."""
    return {"id": "mobile", "currency": "EUR", "telecom": {
        "timezone": "UTC",
        "rounding": {"decimals": 4, "method": "half_up"},
        "time_bands": {"default": "any", "periods": []},
        "destinations": {"NAT": {"group": "national", "prefixes": ["49"]}},
        "rates": {"R": {"increments": "60/60", "groups": [{"price": "0.10", "per": 60}]}},
        "meters": {"voice_seconds": {"kind": "voice", "rates": [{"destination": "NAT", "rate": "R"}]}},
    }}  # fmt: skip
