"""The close's version 2 document (invoice_emitter/issue.py, records.py, subjects.py): buyer, dates, per-user
shares, the no-country rule, and finalization in the invoice store. Expected values worked by hand.

Prices from tests/data/catalog.yaml, plan `basic`: api_calls graduated 0-10 free, 10-100 at 0.50 (USD).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.entities import invoices
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.invoice_emitter.close import RECORDS_FILE, close_period
from meterstream.invoice_emitter.issue import NO_COUNTRY_NOTE, Issuing, issue_date_of, issue_draft, load_tax_table
from meterstream.invoice_emitter.records import Recorder
from meterstream.rating.catalog import load_catalog
from meterstream.schemas.entities import CustomerDoc

CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")


def insert(client, db: str, customer: str, subject: str, quantity: str, period: str = "2026-10") -> None:
    t = datetime(int(period[:4]), int(period[5:]), 15, tzinfo=UTC)
    row = ["t1", uuid.uuid4().hex, customer, subject, "api_calls", t, period, Decimal(quantity), Decimal(0),
           Decimal(0), "USD", "basic", "api_calls", {}, "", 0, 0]  # fmt: skip
    client.insert(f"{db}.rated_usage", [row], column_names=list(RATED_COLUMNS))


def v1(total: str = "40.00") -> dict:
    return {"document_version": 1, "invoice_id": "INV-202610-abc", "status": "final", "tenant": "t1",
            "customer": "c1", "period": "2026-10", "plan": "basic", "currency": "USD",
            "lines": [{"line_no": 1, "meter": "api_calls", "description": "api calls", "quantity": "90",
                       "amount": total}],
            "subtotal": total, "tax": "0", "total": total}  # fmt: skip


def test_per_user_shares_add_up_to_the_line(chdb_client, db: str, tmp_path: Path) -> None:
    # 90 calls: (90 - 10) x 0.50 = 40.00, three users with 30 calls each: 40.00 / 3 = 13.333... each; floors
    # 13.33 x 3 = 39.99, the cent left goes to the first of the equal remainders (subject order): u1
    for subject in ("u2", "u1", "u3"):
        insert(chdb_client, db, "c1", subject, "30")
    insert(chdb_client, db, "c2", "", "20")  # no subjects: (20 - 10) x 0.50 = 5.00, no per-user section
    result = close_period(chdb_client, db, CATALOG, "2026-10", tmp_path / "inv", progress=False)
    docs = {d["customer"]: d for d in result.invoices}
    (line,) = docs["c1"]["lines"]
    assert line["amount"] == "40.00"
    assert line["subjects"] == [{"subject": "u1", "quantity": "30", "amount": "13.34"},
                                {"subject": "u2", "quantity": "30", "amount": "13.33"},
                                {"subject": "u3", "quantity": "30", "amount": "13.33"}]  # fmt: skip
    assert docs["c2"]["lines"][0]["subjects"] == []
    # catalog-file customers have no store record: the external id names the buyer, no tax without a country
    assert docs["c1"]["buyer"]["name"] == "c1" and docs["c1"]["buyer"]["address"] is None
    assert (docs["c1"]["tax_total"], docs["c1"]["total"], docs["c1"]["taxes"]) == ("0.00", "40.00", [])
    assert docs["c1"]["notes"] == [NO_COUNTRY_NOTE]
    # the records of a close given no entity store live next to the files
    sf = session_factory(make_engine(url=f"sqlite:///{tmp_path / 'inv' / RECORDS_FILE}"))
    assert [(r.customer, r.number) for r in invoices.list_invoices(sf, "t1")] == [
        ("c1", "DEMO-2026-000001"),
        ("c2", "DEMO-2026-000002"),
    ]


def test_a_share_with_usage_without_a_subject(chdb_client, db: str, tmp_path: Path) -> None:
    # 100 calls: (100 - 10) x 0.50 = 45.00; u1 75 calls -> 45 x 0.75 = 33.75, the rest 25 -> 11.25
    insert(chdb_client, db, "c1", "u1", "75")
    insert(chdb_client, db, "c1", "", "25")
    (doc,) = close_period(chdb_client, db, CATALOG, "2026-10", tmp_path / "inv", progress=False).invoices
    assert [(s["subject"], s["amount"]) for s in doc["lines"][0]["subjects"]] == [
        ("(no subject)", "11.25"),
        ("u1", "33.75"),
    ]


def test_issue_date_rule() -> None:
    # a UTC month ends at Nov 1 00:00 UTC: issued Nov 1; a period ending at Nov 15 00:00 Paris (Nov 14 23:00 UTC)
    # is issued Nov 15 (the local day after its last day)
    assert issue_date_of(datetime(2026, 11, 1, tzinfo=UTC), "UTC") == date(2026, 11, 1)
    assert issue_date_of(datetime(2026, 11, 14, 23, tzinfo=UTC), "Europe/Paris") == date(2026, 11, 15)
    assert issue_date_of(datetime(2026, 11, 14, 23, tzinfo=UTC), "UTC") == date(2026, 11, 14)


def test_a_draft_for_a_customer_of_the_store() -> None:
    # a French consumer on the catalog file path (UTC month): 20 % VAT on 40.00 = 8.00; due 14 days after Nov 1
    customer = CustomerDoc(tenant="t1", external_id="c1", name="Marie", version=1, country="FR",
                           timezone="Europe/Paris", payment_terms_days=14)  # fmt: skip
    doc = issue_draft(v1(), Issuing.default(), customer)
    assert (doc.status, doc.number, doc.timezone) == ("draft", None, "UTC")
    assert (doc.issue_date, doc.due_date) == (date(2026, 11, 1), date(2026, 11, 15))
    assert (doc.subtotal, doc.tax_total, doc.total, doc.amount_due) == (
        Decimal("40.00"),
        Decimal("8.00"),
        Decimal("48.00"),
        Decimal("48.00"),
    )
    assert (doc.buyer.name, doc.issuer.name, doc.issuer.address.country) == ("Marie", "Meterstream Demo GmbH", "DE")


def test_tax_table_file(tmp_path: Path) -> None:
    path = tmp_path / "tax.yaml"
    path.write_text("rates:\n  US-TX: {standard: 0.0625}\n")  # unquoted: must stay the decimal 0.0625
    assert load_tax_table(path).rate("US-TX", "standard") == Decimal("0.0625")
    path.write_text("rates:\n  US: {standard: 6.25}\n")
    with pytest.raises(ValueError, match=r"rates\.US\.standard: 6\.25 is more than 1"):
        load_tax_table(path)


def test_finalizing_twice_gives_the_stored_document_and_no_new_number(tmp_path: Path) -> None:
    engine = make_engine(url=f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine=engine)
    recorder = Recorder(session_factory(engine), Issuing.default())
    draft = issue_draft(v1(), Issuing.default())
    first = recorder.finalize(draft)
    assert (first.status, first.number) == ("finalized", "DEMO-2026-000001")
    # a close that stopped after recording, run again with other figures: the issued invoice stands
    again = recorder.finalize(msgspec.structs.replace(issue_draft(v1("45.00"), Issuing.default())))
    assert again == first and again.total == Decimal("40.00")
    other = recorder.finalize(msgspec.structs.replace(draft, id="INV-202610-other", customer="c2"))
    assert other.number == "DEMO-2026-000002"  # the next number: no gap, no duplicate


def test_render_writes_html_next_to_the_json(chdb_client, db: str, tmp_path: Path) -> None:
    insert(chdb_client, db, "c1", "u1", "30")  # (30 - 10) x 0.50 = 10.00
    result = close_period(chdb_client, db, CATALOG, "2026-10", tmp_path / "inv", progress=False, render=("html",))
    (path,) = result.files
    html = path.with_suffix(".html").read_text()
    assert "DEMO-2026-000001" in html and "Meterstream Demo GmbH" in html and "10.00" in html
    assert not path.with_suffix(".pdf").exists()  # only the formats asked for


@pytest.mark.parametrize("field", ["amount", "tax_amount", "discount_amount"])
def test_validate_names_a_line_amount_that_is_not_whole_cents(field: str) -> None:
    from meterstream.schemas.invoice import validate

    draft = issue_draft(v1(), Issuing.default())
    (line,) = draft.lines
    # 0.005 USD is half a cent; NaN is no amount at all; 1.000 is a whole cent amount written with more digits
    for bad, text in ((Decimal("0.005"), "0.005"), (Decimal("NaN"), "NaN")):
        doc = msgspec.structs.replace(draft, lines=[msgspec.structs.replace(line, **{field: bad})])
        with pytest.raises(ValueError, match=rf"^lines\[0\]\.{field}: {text} is not an amount in USD \(2 decimals\)"):
            validate(doc)
    assert validate(msgspec.structs.replace(draft, lines=[msgspec.structs.replace(line, amount=Decimal("40.000"))]))
