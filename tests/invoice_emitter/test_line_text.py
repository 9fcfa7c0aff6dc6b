"""Invoice line text defects of issue 17, each checked against figures worked by hand.

1. Quantities read from ClickHouse carry its storage scale (Decimal(38, 12): 1000.000000000000); a line's
   wording must not print those twelve zeros ("1000 × 0.000137", not "1000.000000000000 × 0.000137").
2. A telecom line shows the units its billing increments billed and the amount the stream rated for it.
3. A late-usage adjustment line has a precise (unrounded) amount, like every usage line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from invoice_plans import mobile_plan

from meterstream.aggregation.usage_query import MeterUsage, UsageRecord
from meterstream.documents.html import render_html
from meterstream.invoice_emitter.adjustments import adjustment_lines
from meterstream.invoice_emitter.document import build_invoice
from meterstream.invoice_emitter.telecom_lines import telecom_lines
from meterstream.rating.catalog import parse_catalog
from meterstream.schemas.invoice import from_v1

SCALE_12 = Decimal("0.000000000000")  # what a Decimal(38, 12) column adds to a whole number


def _catalog():
    return parse_catalog({
        "plans": [
            {"id": "cloud", "currency": "USD", "meters": {
                "storage_gb_hours": {"model": "unit", "unit_amount": "0.000137"},
                "api_calls": {"model": "graduated", "tiers": [
                    {"up_to": "10000", "unit_amount": "0"}, {"up_to": None, "unit_amount": "0.00002"}]},
                "objects": {"model": "package", "package_size": "1000", "package_amount": "0.12", "rounding": "up"},
            }},
            mobile_plan(),
        ],
        "assignments": [{"tenant": "t", "customer": "*", "plan": "cloud"}],
    })  # fmt: skip


def test_breakdown_wording_has_no_storage_scale_zeros() -> None:
    plan = _catalog().plans["cloud"]
    usage = [
        MeterUsage("t", "c", "cloud", "USD", "storage_gb_hours", Decimal(1000) + SCALE_12, 1, Decimal("0.137")),
        MeterUsage("t", "c", "cloud", "USD", "api_calls", Decimal(25000) + SCALE_12, 1, Decimal("0.3")),
        MeterUsage("t", "c", "cloud", "USD", "objects", Decimal("13666146.252") + SCALE_12, 1, Decimal("1640.04")),
    ]
    doc = build_invoice("t", "c", "2026-09", plan, usage)
    texts = {line["meter"]: [b["description"] for b in line["breakdown"]] for line in doc["lines"]}
    assert texts["storage_gb_hours"] == ["1000 × 0.000137"]  # 1000 x 0.000137 = 0.137
    # tier 1: the first 10,000 at 0; tier 2: 25,000 - 10,000 = 15,000 at 0.00002 (= 0.30)
    assert texts["api_calls"] == ["Tier 1 (up to 10000): 10000 × 0", "Tier 2 (above 10000): 15000 × 0.00002"]
    # 13,666,146.252 / 1000 = 13,666.146 packages, rounded up: 13,667 x 0.12 = 1,640.04
    assert texts["objects"] == ["13666146.252 units = 13667 package(s) of 1000 × 0.12"]
    assert [line["amount"] for line in doc["lines"]] == ["0.30", "1640.04", "0.14"]  # api, objects, storage


def test_telecom_line_shows_billed_units_and_streamed_amount() -> None:
    plan = _catalog().plans["mobile"]
    at = datetime(2026, 9, 15, 10, tzinfo=UTC)
    records = [  # 95 s and 61 s in 60 s increments: 120 s and 120 s billed, 2 minutes each at 0.10 = 0.20
        UsageRecord("t", "c", "voice_seconds", Decimal(95) + SCALE_12, at, {"destination": "+4930111"}, Decimal("0.2")),
        UsageRecord("t", "c", "voice_seconds", Decimal(61) + SCALE_12, at, {"destination": "+4930222"},
                    Decimal("0.19")),
    ]  # fmt: skip
    lines, rerated, streamed = telecom_lines(plan, records)
    assert (rerated, streamed) == (Decimal("0.40"), Decimal("0.39"))
    [line] = lines
    assert (line["quantity"], line["billed_units"], line["bundle_units"]) == ("156", "240", "0")
    assert (line["precise_amount"], line["amount"], line["streamed_amount"]) == ("0.4000", "0.40", "0.39")
    # the finalized (version 2) document shows the billed units as the line's pricing step
    doc = build_invoice("t", "c", "2026-09", plan, [], extra_lines=lines)
    [v2] = from_v1(doc).lines
    assert [(row.kind, row.quantity, row.amount) for row in v2.tiers] == [
        ("billed_units", Decimal(240), Decimal("0.4000"))
    ]
    # and the rendered page names that step in the page's language
    html = render_html(from_v1(doc), locale="de_DE")
    assert "Abgerechnete Einheiten" in html and "billed_units" not in html


def test_adjustment_line_has_its_precise_amount() -> None:
    # the period now: 110 units priced 47.5025 (rounded 47.50); billed for it before: 50 units, 20.00
    now = [{"meter": "api_calls", "description": "api calls", "quantity": "110", "precise_amount": "47.5025",
            "amount": "47.50"}]  # fmt: skip
    [adj] = adjustment_lines(now, {"api_calls": ("api_calls", Decimal(50), Decimal("20.00"))}, "2026-09", "USD")
    assert (adj["quantity"], adj["amount"], adj["precise_amount"]) == ("60", "27.50", "27.5025")
    # a line key billed before and gone now is credited in full, precisely
    [gone] = adjustment_lines([], {"sms": ("sms", Decimal(3), Decimal("0.27"))}, "2026-09", "USD")
    assert (gone["quantity"], gone["amount"], gone["precise_amount"]) == ("-3", "-0.27", "-0.27")
