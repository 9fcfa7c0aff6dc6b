"""The typed invoice document: JSON Schema file current, round trip, validate() refusals, from_v1."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal as D

import jsonschema
import msgspec
import pytest
from invoice_samples import sales_tax_doc

from meterstream.schemas.entities import Address as CustomerAddress
from meterstream.schemas.entities import CustomerDoc
from meterstream.schemas.invoice import (
    SCHEMA_PATH,
    InvoiceDoc,
    SubjectShare,
    buyer_from_customer,
    decode,
    encode,
    from_v1,
    json_schema,
    json_schema_text,
    validate,
)

replace = msgspec.structs.replace


def test_schema_file_is_generated_and_current() -> None:
    # regenerate with: python -m meterstream.schemas.invoice
    assert SCHEMA_PATH.read_text() == json_schema_text()
    schema = json.loads(SCHEMA_PATH.read_text())
    doc = schema["$defs"]["InvoiceDoc"]
    for name in (
        "schema_version",
        "number",
        "status",
        "issuer",
        "buyer",
        "lines",
        "discounts",
        "taxes",
        "subtotal",
        "discount_total",
        "tax_total",
        "total",
        "credits_applied",
        "amount_due",
        "issue_date",
        "due_date",
    ):
        assert name in doc["properties"], name  # fmt: skip
    assert doc["properties"]["total"] == {"type": "string", "format": "decimal"}  # money is a string, never a float
    assert set(doc["properties"]["status"]["enum"]) == {"draft", "finalized", "paid", "partially_paid", "overdue",
                                                        "voided"}  # fmt: skip
    assert "from" in schema["$defs"]["TierRow"]["properties"]


def test_documents_validate_against_the_json_schema(example_doc: InvoiceDoc) -> None:
    schema = json_schema()
    jsonschema.validate(json.loads(encode(example_doc)), schema)
    wire = json.loads(encode(example_doc))
    wire["total"] = 479.97  # a float amount
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wire, schema)


def test_round_trip_keeps_decimals_as_strings(example_doc: InvoiceDoc) -> None:
    data = encode(example_doc)
    wire = json.loads(data)
    assert wire["schema_version"] == 2
    assert wire["amount_due"] == "459.97"
    assert wire["lines"][0]["tiers"][2] == {"kind": "tier", "tier": 3, "from": "1000000", "to": None,
                                            "quantity": "250000", "unit_price": "0.00001", "flat": "25",
                                            "amount": "27.50", "description": None}  # fmt: skip
    assert decode(data) == example_doc


def test_decode_refuses_unknown_fields_and_naive_instants(example_doc: InvoiceDoc) -> None:
    wire = json.loads(encode(example_doc))
    with pytest.raises(msgspec.ValidationError, match="totl"):
        decode(json.dumps({**wire, "totl": "1"}))
    with pytest.raises(msgspec.ValidationError, match="period_start"):
        decode(json.dumps({**wire, "period_start": "2026-11-01T00:00:00"}))
    with pytest.raises(msgspec.ValidationError, match="schema_version"):
        decode(json.dumps({**wire, "schema_version": 3}))


def test_example_and_sales_tax_documents_add_up(example_doc: InvoiceDoc) -> None:
    assert validate(example_doc) is example_doc
    validate(sales_tax_doc())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subtotal": D("1234.57")}, "subtotal"),  # lines add up to 1234.56
        ({"total": D("1324.08")}, "total"),  # 1234.56 - 0 + 89.51 = 1324.07
        ({"amount_due": D("1300.00")}, "amount_due"),
        ({"tax_total": D("89.50"), "total": D("1324.06"), "amount_due": D("1324.06")}, "tax_total"),
        ({"discount_total": D("1.00")}, "discount_total"),  # no discounts
        ({"currency": "XXX"}, "currency"),
        ({"number": "ACME-2026-000007", "status": "draft"}, "number"),
        ({"period_end": datetime(2026, 10, 1, tzinfo=UTC)}, "period_end"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ],
)
def test_validate_refuses_documents_that_do_not_add_up(change: dict, field: str) -> None:
    doc = replace(sales_tax_doc(), **change)
    with pytest.raises(ValueError, match=f"^{field}: "):
        validate(doc)


def test_validate_refuses_line_level_errors() -> None:
    doc = sales_tax_doc()
    lines = list(doc.lines)
    bad = replace(doc, lines=[replace(lines[0], amount=D("999.995")), lines[1]])
    with pytest.raises(ValueError, match=r"^lines\[0\]\.amount: 999\.995 is not an amount in USD"):
        validate(bad)
    shares = [SubjectShare(subject="a", quantity=D("1"), amount=D("600.00")),
              SubjectShare(subject="b", quantity=D("0"), amount=D("399.99"))]  # fmt: skip
    with pytest.raises(ValueError, match=r"^lines\[0\]\.subjects: 999\.99 is not the line's amount"):
        validate(replace(doc, lines=[replace(lines[0], subjects=shares), lines[1]]))
    with pytest.raises(ValueError, match=r"^lines\[1\]\.line_no"):
        validate(replace(doc, lines=[lines[0], replace(lines[1], line_no=3)]))
    with pytest.raises(ValueError, match=r"^lines\[0\]\.tax_rate"):
        validate(replace(doc, lines=[replace(lines[0], tax_rate=D("7.25")), lines[1]]))


def test_validate_refuses_tax_totals_that_disagree(example_doc: InvoiceDoc) -> None:
    doc = sales_tax_doc()
    (tax,) = doc.taxes
    with pytest.raises(ValueError, match=r"^taxes: 1234\.00 is not subtotal - discount_total"):
        validate(replace(doc, taxes=[replace(tax, taxable_amount=D("1234.00"))]))
    (rc,) = example_doc.taxes
    with pytest.raises(ValueError, match=r"^taxes\[0\]\.reverse_charge"):
        validate(replace(example_doc, taxes=[replace(rc, mention=None)]))
    line = example_doc.lines[0]
    with pytest.raises(ValueError, match=r"^discount_total: 53\.33 is not the sum of the lines' discount_amount"):
        validate(replace(example_doc, lines=[replace(line, discount_amount=D("4.72")), *example_doc.lines[1:]]))


def test_from_v1_on_a_demo_invoice(v1_path) -> None:
    raw = json.loads(v1_path.read_text())
    doc = validate(from_v1(raw))
    assert (doc.schema_version, doc.id, doc.status, doc.number) == (2, "INV-202611-3c72eed3f0961d7d", "finalized", None)
    assert (doc.tenant, doc.customer, doc.period, doc.currency, doc.plan) == ("cloudco", "org-000", "2026-11", "USD",
                                                                             "cloud-enterprise")  # fmt: skip
    # the catalog file's close bills UTC months
    assert (doc.period_start, doc.period_end) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    api, storage = doc.lines
    assert (api.kind, api.code, api.quantity, api.amount, api.events) == ("usage", "api_calls", D("5452784"),
                                                                         D("250.00"), 21836)  # fmt: skip
    assert (api.start, api.end, api.plan) == (doc.period_start, doc.period_end, "cloud-enterprise")
    # volume pricing: all 5,452,784 calls in tier 3 (above 1,000,000) at 0.00001 = 54.52784, plus its flat 25
    tier3, minimum = api.tiers
    assert (tier3.kind, tier3.tier, tier3.from_, tier3.to) == ("tier", 3, D("1000000"), None)
    assert (tier3.quantity, tier3.unit_price, tier3.flat, tier3.amount) == (D("5452784"), D("0.00001"), D("25"),
                                                                           D("79.52784"))  # fmt: skip
    # a 250 minimum per period: 250 - 79.52784 = 170.47216
    assert (minimum.kind, minimum.amount) == ("minimum_true_up", D("170.47216"))
    # 13,666,146.252 GB-h in packages of 1000: 13,667 packages x 0.12 = 1640.04
    (package,) = storage.tiers
    assert (package.kind, package.quantity, package.unit_price, package.amount) == ("package", D("13667"), D("0.12"),
                                                                                   D("1640.04"))  # fmt: skip
    assert (doc.subtotal, doc.tax_total, doc.total, doc.amount_due) == (D("1890.04"), 0, D("1890.04"), D("1890.04"))
    assert all(line.tax_amount == 0 and line.tax_code is None for line in doc.lines)


def test_from_v1_on_a_subscription_invoice() -> None:
    """The subscription close's v1 shape: usage with its phase part, a fee (ChargeLine.to_json), a true-up and a
    late-usage adjustment of October."""
    start, end = "2026-11-01T05:00:00Z", "2026-12-01T05:00:00Z"
    raw = {
        "document_version": 1, "invoice_id": "INV-202611-aa", "status": "draft", "tenant": "t", "customer": "c",
        "period": "2026-11", "plan": "pro@2", "currency": "EUR", "subtotal": "129.90", "tax": "0", "total": "129.90",
        "period_start": start, "period_end": end, "timezone": "America/New_York",
        "billing_periods": [{"subscription": "s1", "start": start, "end": end}],
        "lines": [
            {"line_no": 1, "kind": "usage", "plan": "pro@2", "subscription": "s1", "start": start,
             "end": "2026-11-15T05:00:00Z", "meter": "tokens", "description": "tokens", "quantity": "1000",
             "events": 4, "precise_amount": "10", "amount": "10.00", "streamed_amount": "10",
             "breakdown": [{"description": "1000 x 0.01", "kind": "unit", "quantity": "1000", "unit_amount": "0.01",
                            "amount": "10"}], "line_key": "@s1/x/tokens"},
            {"line_no": 2, "kind": "fixed", "plan": "pro@2", "subscription": "s1", "meter": "", "code": "base",
             "description": "Base fee", "quantity": "30", "unit_price": "99.90", "amount": "99.90", "start": start,
             "end": end, "currency": "EUR", "timing": "advance", "period_days": 30, "line_key": "@s1/base"},
            {"line_no": 3, "kind": "minimum_true_up", "plan": "pro@2", "subscription": "s1", "meter": "",
             "code": "minimum", "description": "Minimum commitment", "quantity": "1", "unit_price": "15.00",
             "amount": "15.00", "start": start, "end": end, "currency": "EUR", "timing": None, "period_days": None},
            {"kind": "adjustment", "applies_to": "2026-10", "meter": "tokens", "line_key": "@s1/y/tokens",
             "description": "late usage for 2026-10: tokens", "quantity": "500", "amount": "5.00", "line_no": 4},
        ],
    }  # fmt: skip
    doc = validate(from_v1(raw))
    assert doc.status == "draft" and doc.timezone == "America/New_York"
    assert doc.period_start == datetime(2026, 11, 1, 5, tzinfo=UTC)
    assert [x.kind for x in doc.lines] == ["usage", "fixed", "minimum", "adjustment"]
    usage, fee, minimum, late = doc.lines
    assert (usage.code, usage.unit_price, usage.end) == ("tokens", D("0.01"), datetime(2026, 11, 15, 5, tzinfo=UTC))
    assert (fee.code, fee.quantity, fee.unit_price, fee.subscription) == ("base", D("30"), D("99.90"), "s1")
    assert (minimum.code, minimum.amount) == ("minimum", D("15.00"))
    # an adjustment covers the (UTC) month it corrects
    assert (late.applies_to, late.start, late.end) == ("2026-10", datetime(2026, 10, 1, tzinfo=UTC),
                                                       datetime(2026, 11, 1, tzinfo=UTC))  # fmt: skip
    assert doc.billing_periods[0].subscription == "s1"


def test_from_v1_refuses_what_is_not_a_v1_invoice(v1_path) -> None:
    raw = json.loads(v1_path.read_text())
    with pytest.raises(ValueError, match=r"^document_version: 2 is not 1"):
        from_v1({**raw, "document_version": 2})
    with pytest.raises(ValueError, match=r"^tax: "):
        from_v1({**raw, "tax": "3.00"})
    with pytest.raises(ValueError, match=r"^status: "):
        from_v1({**raw, "status": "paid"})
    with pytest.raises(ValueError, match=r"^subtotal: 1\.00 is not the sum of the lines"):
        validate(from_v1({**raw, "subtotal": "1.00"}))


def test_buyer_from_customer_billing_details() -> None:
    address = CustomerAddress(line1="Hafenstraße 3", city="Hamburg", postal_code="20457")
    customer = CustomerDoc(tenant="t", external_id="c-7", name="Müller", version=1, legal_name="Müller Logistik GmbH",
                           tax_id="DE136695976", email="ap@mueller.example", country="DE", address=address)  # fmt: skip
    buyer = buyer_from_customer(customer)
    assert (buyer.name, buyer.tax_id, buyer.email) == ("Müller Logistik GmbH", "DE136695976", "ap@mueller.example")
    assert buyer.address is not None
    assert (buyer.address.line1, buyer.address.postal_code, buyer.address.country) == ("Hafenstraße 3", "20457", "DE")
    bare = buyer_from_customer(CustomerDoc(tenant="t", external_id="c-8", name="Solo", version=1))
    assert (bare.name, bare.address) == ("Solo", None)
