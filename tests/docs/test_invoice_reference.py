"""docs/invoices.md names every field of the invoice document's JSON Schema, and every key of the lines the close
prices before it issues the document (`streamed_amount` among them)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from invoice_plans import mobile_plan

from meterstream.aggregation.usage_query import MeterUsage, UsageRecord
from meterstream.invoice_emitter.document import build_invoice
from meterstream.invoice_emitter.telecom_lines import telecom_lines
from meterstream.rating.catalog import parse_catalog

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "invoices.md").read_text(encoding="utf-8")
SCHEMA = json.loads((ROOT / "schemas" / "invoice.schema.json").read_text(encoding="utf-8"))


def _section(start: str, end: str) -> str:
    assert start in DOC and end in DOC, (start, end)
    return DOC.split(start, 1)[1].split(end, 1)[0]


def named(text: str) -> set[str]:
    """The identifiers a text names as fields: inside `code` spans and inside {brace lists}."""
    spans = re.findall(r"`([^`]+)`", text) + re.findall(r"\{([^{}]*)\}", text)
    return {word for span in spans for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span)}


def test_named_reads_code_spans_and_brace_lists() -> None:
    assert named("`a`, `b.c` and {d, e: f|g} but not h") == {"a", "b", "c", "d", "e", "f", "g"}


def test_every_field_of_the_json_schema_is_documented() -> None:
    documented = named(_section("## The document (version 2)", "### What `validate()` checks"))
    missing = sorted(
        f"{struct}.{field}"
        for struct, definition in SCHEMA["$defs"].items()
        for field in definition.get("properties", {})
        if field not in documented
    )
    assert missing == []
    assert len(SCHEMA["$defs"]) >= 9  # InvoiceDoc, InvoiceLine, TierRow, Party, Address, Discount, TaxTotal, ...


def _plans():
    return parse_catalog({
        "plans": [
            {"id": "cloud", "currency": "USD", "meters": {"api_calls": {"model": "unit", "unit_amount": "0.002"}}},
            mobile_plan(),
        ],
        "assignments": [{"tenant": "t", "customer": "*", "plan": "cloud"}],
    }).plans  # fmt: skip


def test_every_key_of_the_closes_lines_is_documented() -> None:
    plans = _plans()
    # 500 calls x 0.002 = 1.00; the stream rated 0.99 of it
    usage = [MeterUsage("t", "c", "cloud", "USD", "api_calls", Decimal(500), 500, Decimal("0.99"))]
    [line] = build_invoice("t", "c", "2026-09", plans["cloud"], usage)["lines"]
    assert (Decimal(line["precise_amount"]), line["streamed_amount"]) == (Decimal("1.00"), "0.99")
    at = datetime(2026, 9, 15, 10, tzinfo=UTC)  # 95 s in 60 s increments: 2 minutes at 0.10 = 0.20
    record = UsageRecord("t", "c", "voice_seconds", Decimal(95), at, {"destination": "+4930111"}, Decimal("0.2"))
    [call], _, _ = telecom_lines(plans["mobile"], [record])
    assert call["streamed_amount"] == "0.2"
    section = _section("### The close's lines and `streamed_amount`", "### What the close writes")
    documented = named(section)
    assert sorted((line.keys() | call.keys()) - documented) == []
    assert "**The version 2 document carries `streamed_amount`**" in section
    assert "streamed_amount" in SCHEMA["$defs"]["InvoiceLine"]["properties"]  # else the section is wrong
