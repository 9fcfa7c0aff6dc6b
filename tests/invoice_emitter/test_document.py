"""Invoice documents: the meter lines show `rating.quote` exactly, whether a (price, quantity) was cached or not.

Prices from tests/data/catalog.yaml, plan `basic`: api_calls graduated 0-10 free, 10-100 at 0.50, above
100 at 0.25; storage_gb_hours unit, 0.001 (USD).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from meterstream.aggregation.usage_query import MeterUsage
from meterstream.invoice_emitter.document import MeterPricer, build_invoice, decimal_text, invoice_and_differences
from meterstream.rating import quote
from meterstream.rating.catalog import load_catalog

CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")
BASIC = CATALOG.plans["basic"]


def usage(customer: str, meter: str, quantity: str, streamed: str | None = None) -> MeterUsage:
    q = Decimal(quantity)
    amount = quote(BASIC.prices[meter], q).precise_total if streamed is None else Decimal(streamed)
    return MeterUsage("t1", customer, "basic", "USD", meter, q, 3, amount)


def test_a_cached_quote_gives_the_same_line_as_a_fresh_one() -> None:
    pricer = MeterPricer()
    rows = [usage("c1", "api_calls", "113.000000000000"), usage("c1", "storage_gb_hours", "1250.750000000000")]
    first = build_invoice("t1", "c1", "2026-10", BASIC, rows, pricer=pricer)
    again = build_invoice("t1", "c1", "2026-10", BASIC, rows, pricer=pricer)  # every line from the cache
    fresh = build_invoice("t1", "c1", "2026-10", BASIC, rows)
    assert first == again == fresh
    api = first["lines"][0]
    # 90 * 0.50 + 13 * 0.25 = 48.25
    assert (api["quantity"], api["precise_amount"], api["amount"], api["streamed_amount"]) == (
        "113",
        "48.25",
        "48.25",
        "48.25",
    )
    assert [b["kind"] for b in api["breakdown"]] == ["tier", "tier", "tier"]
    assert sum(Decimal(line["amount"]) for line in first["lines"]) == Decimal(first["total"])


def test_the_cache_key_is_the_quantitys_exact_text() -> None:
    """Equal quantities with other digits are other keys; the breakdown texts show neither's trailing zeros."""
    pricer = MeterPricer()
    price = BASIC.prices["storage_gb_hours"]
    short, long = pricer(price, Decimal("2")), pricer(price, Decimal("2.000"))
    assert short is not long and short.breakdown == long.breakdown
    assert pricer(price, Decimal("2")) is short
    assert (short.quantity_text, long.quantity_text) == ("2", "2")
    assert long.breakdown[0]["description"] == f"2 × {price.unit_amount}"


def test_the_cache_is_bounded() -> None:
    pricer = MeterPricer(limit=2)
    price = BASIC.prices["api_calls"]
    for q in ("1", "2", "3", "4"):
        pricer(price, Decimal(q))
    assert pricer(price, Decimal("1")) is pricer(price, Decimal("1"))
    assert pricer(price, Decimal("4")) is not pricer(price, Decimal("4"))  # not kept, quoted again


def test_differences_name_the_lines_whose_streamed_amount_differs() -> None:
    rows = [usage("c1", "api_calls", "113", streamed="48.2"), usage("c1", "storage_gb_hours", "10")]
    doc, differ = invoice_and_differences("t1", "c1", "2026-10", BASIC, rows, pricer=MeterPricer())
    assert differ == ["api_calls"]
    assert [line["streamed_amount"] for line in doc["lines"]] == ["48.2", decimal_text(rows[1].streamed_amount)]


def test_extra_lines_come_first_and_count_in_the_total() -> None:
    extra = [{"meter": "voice_seconds", "description": "voice", "quantity": "60", "amount": "1.10"}]
    doc = build_invoice("t1", "c1", "2026-10", BASIC, [usage("c1", "api_calls", "20")], extra)
    assert [(line["line_no"], line["meter"]) for line in doc["lines"]] == [(1, "voice_seconds"), (2, "api_calls")]
    assert doc["total"] == doc["subtotal"] == "6.10"  # 1.10 + 10 * 0.50
