"""The chaos run's expected invoice totals: a hand-checked case, and proof that they do not share the close's
pricing path (a pricing or bundle error injected into the close makes the close differ from them).

Expected figures are worked out by hand in the comments, from docs/pricing.md and docs/telecom.md.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from meterstream.aggregation.usage_query import MeterUsage, UsageRecord
from meterstream.deploy.chaos_expect import expected_totals
from meterstream.invoice_emitter.document import build_invoice
from meterstream.invoice_emitter.telecom_lines import telecom_lines
from meterstream.rating.catalog import Catalog, parse_catalog

# cloud (USD): api_calls graduated, the first 100 free then 0.01 each;
#              storage_gb_hours 0.125 per GB-hour with a 2.00 minimum per period (due even at 0).
# tel (EUR):   time zone UTC; voice to 49... 60/1 at 0.10/min peak (Mon-Fri 08-19), 0.04/min otherwise;
#              SMS 0.09; bundle NAT_MIN = 2 minutes (120 s) of national voice per period.
CATALOG = {
    "plans": [
        {
            "id": "cloud",
            "currency": "USD",
            "meters": {
                "api_calls": {
                    "model": "graduated",
                    "tiers": [{"up_to": "100", "unit_amount": "0"}, {"up_to": None, "unit_amount": "0.01"}],
                },
                "storage_gb_hours": {"model": "unit", "unit_amount": "0.125", "minimum": "2"},
            },
        },
        {
            "id": "tel",
            "currency": "EUR",
            "telecom": {
                "timezone": "UTC",
                "rounding": {"decimals": 4, "method": "half_up"},
                "time_bands": {
                    "default": "offpeak",
                    "periods": [{"band": "peak", "days": ["weekdays"], "start": "08:00", "end": "19:00"}],
                },
                "destinations": {"NAT": {"group": "national", "prefixes": ["49"]}},
                "rates": {
                    "R_PEAK": {"increments": "60/1", "groups": [{"price": "0.10", "per": 60}]},
                    "R_OFF": {"increments": "60/1", "groups": [{"price": "0.04", "per": 60}]},
                    "R_SMS": {"groups": [{"price": "0.09", "per": 1}]},
                },
                "meters": {
                    "voice_seconds": {
                        "kind": "voice",
                        "rates": [{"destination": "NAT", "bands": {"peak": "R_PEAK", "offpeak": "R_OFF"}}],
                    },
                    "sms": {"kind": "sms", "rates": [{"destination": "*any", "group": "sms", "rate": "R_SMS"}]},
                },
                "bundles": [
                    {"id": "NAT_MIN", "meter": "voice_seconds", "amount": 2, "unit": "minutes", "groups": ["national"]}
                ],
            },
        },
    ],
    "assignments": [
        {"tenant": "cloudco", "customer": "*", "plan": "cloud"},
        {"tenant": "telco", "customer": "*", "plan": "tel"},
    ],
}


def _catalog() -> Catalog:
    return parse_catalog(CATALOG)


_ids = itertools.count(1)


def _ev(period: str, tenant: str, customer: str, meter: str, quantity: str, time: str = "", dest: str = "") -> dict:
    """An accepted event as the generator keeps it (`Truth.accepted_events`)."""
    time = time or f"{period}-15T12:00:00.000Z"
    dims = {"destination": dest} if dest else {}
    return {"id": f"e{next(_ids)}", "tenant": tenant, "customer": customer, "meter": meter, "quantity": quantity,
            "time": time, "dimensions": dims, "period": period}  # fmt: skip


# Calendar: 2026-10-06 Tue, 2026-10-07 Wed, 2026-11-03 Tue, 2026-11-04 Wed.
BEFORE_CLOSE = [  # period 2026-10, produced and billed before 2026-10 was closed
    _ev("2026-10", "cloudco", "org-1", "api_calls", "150"),
    _ev("2026-10", "cloudco", "org-1", "storage_gb_hours", "4"),
    _ev("2026-10", "telco", "acct-1", "voice_seconds", "90", "2026-10-06T10:00:00.000Z", "+4930123456"),
    _ev("2026-10", "cloudco", "org-2", "api_calls", "50"),
]
AFTER_CLOSE = [
    _ev("2026-11", "cloudco", "org-1", "api_calls", "300"),
    _ev("2026-11", "telco", "acct-1", "voice_seconds", "61", "2026-11-03T10:00:00.000Z", "+4930123456"),
    _ev("2026-11", "telco", "acct-1", "sms", "1", "2026-11-03T12:00:00.000Z", "+4930123456"),
    _ev("2026-10", "cloudco", "org-1", "api_calls", "20"),  # late for the closed 2026-10
    _ev("2026-10", "telco", "acct-1", "voice_seconds", "60", "2026-10-07T20:00:00.000Z", "+4930999999"),  # late
    _ev("2026-10", "cloudco", "org-3", "storage_gb_hours", "10"),  # late, and org-3 has nothing in 2026-11
    _ev("2026-11", "telco", "acct-2", "voice_seconds", "150", "2026-11-04T20:00:00.000Z", "+4940555555"),
]

# 2026-10 as billed at its close (BEFORE_CLOSE only):
#   org-1   api 150: 50 x 0.01 = 0.50; storage 4 x 0.125 = 0.50 < minimum -> 2.00;  total 2.50
#   org-2   api 50 -> 0; storage 0 -> minimum 2.00;                                  total 2.00
#   acct-1  90 s peak, 60/1 -> billed 90 <= 120 bundle -> 0 (bundle left 30);       total 0.00
# 2026-10 now (with the late events, in arrival order):
#   org-1   api 170: 70 x 0.01 = 0.70; storage 2.00;                 total 2.70 -> adjustment +0.20
#   acct-1  then 60 s offpeak: billed 60, 30 covered, 30 x 0.04/60 = 0.0200 -> line 0.02 -> +0.02
#   org-3   storage 10 x 0.125 = 1.25 < minimum -> 2.00; api 0;       total 2.00 -> +2.00 (nothing billed)
#   org-2   no late usage: no adjustment
# 2026-11:
#   org-1   api 300: 200 x 0.01 = 2.00; storage 0 -> minimum 2.00 = 4.00;   + 0.20 = 4.20
#   acct-1  a fresh bundle for the new period: 61 s peak billed 61 <= 120 -> 0; SMS 0.09;  + 0.02 = 0.11
#           (had the bundle not been reset, 61 x 0.10/60 = 0.1017 -> 0.10 would be charged too)
#   acct-2  150 s offpeak: billed 150; 120 covered; 30 x 0.04/60 = 0.02 = 0.02
#   org-3   only the adjustment: 2.00
#   org-2   no usage in 2026-11 and no late usage: no invoice
EXPECTED = {
    ("cloudco", "org-1"): Decimal("4.20"),
    ("telco", "acct-1"): Decimal("0.11"),
    ("telco", "acct-2"): Decimal("0.02"),
    ("cloudco", "org-3"): Decimal("2.00"),
}


def test_expected_totals_match_the_hand_calculation() -> None:
    assert expected_totals(_catalog(), "2026-11", "2026-10", BEFORE_CLOSE, AFTER_CLOSE) == EXPECTED


def test_without_late_usage_only_the_period_counts() -> None:
    # 2026-10 closed with everything on time: the late lines above move into it; 2026-11 is only its own usage
    on_time = BEFORE_CLOSE + [e for e in AFTER_CLOSE if e["period"] == "2026-10"]
    current = [e for e in AFTER_CLOSE if e["period"] == "2026-11"]
    assert expected_totals(_catalog(), "2026-11", "2026-10", on_time, current) == {
        ("cloudco", "org-1"): Decimal("4.00"),
        ("telco", "acct-1"): Decimal("0.09"),
        ("telco", "acct-2"): Decimal("0.02"),
    }


def test_an_event_the_plan_does_not_rate_is_an_error_not_a_silent_zero() -> None:
    bad = [_ev("2026-11", "cloudco", "org-1", "minutes_of_fun", "3")]
    with pytest.raises(ValueError, match="does not rate meter 'minutes_of_fun'"):
        expected_totals(_catalog(), "2026-11", "2026-10", [], bad)


# --- the close path, as period close runs it on these events (the code the chaos run checks) ---


def _close_totals(catalog: Catalog, period: str, events: list[dict[str, Any]]) -> dict[tuple[str, str], Decimal]:
    """Invoice totals the close's own document code gives for `period` (no adjustments)."""
    quantities: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    records: dict[tuple[str, str], list[UsageRecord]] = defaultdict(list)
    for e in events:
        if e["period"] != period:
            continue
        quantities[(e["tenant"], e["customer"], e["meter"])] += Decimal(e["quantity"])
        counts[(e["tenant"], e["customer"], e["meter"])] += 1
        records[(e["tenant"], e["customer"])].append(UsageRecord(
            e["tenant"], e["customer"], e["meter"], Decimal(e["quantity"]), datetime.fromisoformat(e["time"]),
            e["dimensions"], Decimal(0),
        ))  # fmt: skip
    usage: dict[tuple[str, str], list[MeterUsage]] = defaultdict(list)
    for (t, c, m), q in quantities.items():
        plan = catalog.plan_for(t, c)
        usage[(t, c)].append(MeterUsage(t, c, plan.id, plan.currency, m, q, counts[(t, c, m)], Decimal(0)))
    totals = {}
    for (t, c), rows in usage.items():
        plan = catalog.plan_for(t, c)
        extra = telecom_lines(plan, records[(t, c)])[0] if plan.telecom is not None else []
        totals[(t, c)] = Decimal(build_invoice(t, c, period, plan, rows, extra)["total"])
    return totals


NOVEMBER = [e for e in AFTER_CLOSE if e["period"] == "2026-11"]
NOVEMBER_EXPECTED = {
    ("cloudco", "org-1"): Decimal("4.00"),
    ("telco", "acct-1"): Decimal("0.09"),
    ("telco", "acct-2"): Decimal("0.02"),
}


def _expected_november() -> dict[tuple[str, str], Decimal]:
    return expected_totals(_catalog(), "2026-11", "2026-10", [], NOVEMBER)


def test_the_correct_close_agrees_with_the_expectations() -> None:
    assert _close_totals(_catalog(), "2026-11", NOVEMBER) == NOVEMBER_EXPECTED == _expected_november()


def test_a_pricing_error_in_the_close_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    """The close's meter lines come from `invoice_emitter.document.quote`; make it charge a cent too much."""
    import meterstream.invoice_emitter.document as document

    real = document.quote

    def one_cent_more(price: Any, quantity: Decimal) -> Any:
        q = real(price, quantity)
        return dataclasses.replace(q, total=q.total + Decimal("0.01"), precise_total=q.precise_total + Decimal("0.01"))

    monkeypatch.setattr(document, "quote", one_cent_more)
    close = _close_totals(_catalog(), "2026-11", NOVEMBER)
    assert close[("cloudco", "org-1")] == Decimal("4.02")  # two meter lines, a cent too much each
    expected = _expected_november()
    assert expected == NOVEMBER_EXPECTED  # the expectations do not move with the close
    assert close != expected


def test_a_bundle_error_in_the_close_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    """The close re-rates telecom records with `rating.telecom.rate_cdr`; make it forget the bundle state."""
    import meterstream.invoice_emitter.telecom_lines as lines_module
    import meterstream.rating.telecom as telecom

    real = telecom.rate_cdr

    def no_bundles(plan: Any, **kw: Any) -> Any:
        return real(plan, **{**kw, "bundle_used": {"NAT_MIN": Decimal(120)}})  # as if always used up

    monkeypatch.setattr(telecom, "rate_cdr", no_bundles)
    monkeypatch.setattr(lines_module, "rate_cdr", no_bundles, raising=False)
    close = _close_totals(_catalog(), "2026-11", NOVEMBER)
    # acct-1: 61 s peak now charged 61 x 0.10/60 = 0.1017 -> 0.10, + SMS 0.09 = 0.19
    # acct-2: 150 s offpeak charged 150 x 0.04/60 = 0.10
    assert close[("telco", "acct-1")] == Decimal("0.19")
    assert close[("telco", "acct-2")] == Decimal("0.10")
    assert _expected_november() == NOVEMBER_EXPECTED
    assert close != _expected_november()


def test_a_wrong_close_amount_is_a_mismatch() -> None:
    # what deploy/chaos.py counts: a customer whose written total differs from the expected one
    expected = expected_totals(_catalog(), "2026-11", "2026-10", BEFORE_CLOSE, AFTER_CLOSE)
    written = {**EXPECTED, ("telco", "acct-1"): Decimal("0.12")}
    assert sum(1 for key in set(written) | set(expected) if written.get(key) != expected.get(key)) == 1
