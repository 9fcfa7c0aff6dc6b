"""The own finance API (/v1/invoices, /v1/payments, /v1/credit_notes, /v1/exports) through FastAPI's TestClient,
on SQLite AND PostgreSQL (the tests/api/test_entities_api.py fixture), over invoices stored with a hand-checked
version 2 document (finance_helpers.py: 1234.56 USD + 89.51 sales tax = 1324.07).

Every expected figure is worked out by hand in the test from the request amounts, never read from a response.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest
from api_helpers import error, offline_app
from api_helpers import role_key as key
from fastapi.testclient import TestClient
from finance_helpers import TOTAL, store_invoice

from meterstream.entities import invoices
from meterstream.schemas.invoice import decode

TENANT = "acme"  # the tenant of api_helpers.role_key()


@pytest.fixture
def client(offline_client: TestClient) -> TestClient:
    """The app on an empty store of each kind, SQLite and PostgreSQL (tests/api/conftest.py)."""
    return offline_client


def _sf(c: TestClient):  # type: ignore[no-untyped-def]
    return c.app.state.sessions


def test_invoices_payments_credit_notes_and_export(client: TestClient) -> None:
    admin, reader = key(client), key(client, "read")
    sf = _sf(client)
    first = store_invoice(sf, TENANT, "INV-A", "cust-1")
    second = store_invoice(sf, TENANT, "INV-B", "cust-1", issue_date=date(2026, 12, 2), due_date=date(2027, 1, 1))
    store_invoice(sf, TENANT, "INV-C", "cust-2", finalize=False)
    store_invoice(sf, "other-tenant", "INV-X", "cust-1")  # never visible to acme's keys
    assert (first.number, second.number) == ("ACME-2026-000001", "ACME-2026-000002")

    listed = client.get("/v1/invoices", headers=reader)
    assert listed.status_code == 200
    items = listed.json()["items"]
    # by issue date (A and C: Dec 1, B: Dec 2), then number with drafts last
    assert [(i["invoice_id"], i["number"], i["status"]) for i in items] == [
        ("INV-A", "ACME-2026-000001", "finalized"), ("INV-C", None, "draft"),
        ("INV-B", "ACME-2026-000002", "finalized")]  # fmt: skip
    assert (items[0]["total"], items[0]["amount_due"], items[0]["currency"]) == (TOTAL, TOTAL, "USD")
    only = client.get("/v1/invoices", params={"customer": "cust-2"}, headers=reader).json()["items"]
    assert [i["invoice_id"] for i in only] == ["INV-C"]
    drafts = client.get("/v1/invoices", params={"status": "draft", "period": "2026-11"}, headers=reader)
    assert [i["invoice_id"] for i in drafts.json()["items"]] == ["INV-C"]
    assert client.get("/v1/invoices", params={"period": "2026-10"}, headers=reader).json()["items"] == []
    assert error(client.get("/v1/invoices", params={"status": "open"}, headers=reader))[::2] == (422, "status")

    got = client.get("/v1/invoices/INV-A", headers=reader)
    assert got.status_code == 200 and got.headers["content-type"] == "application/json"
    doc = decode(got.content)  # a version 2 document, stamped at finalization
    assert (doc.number, doc.status, str(doc.total), str(doc.tax_total)) == ("ACME-2026-000001", "finalized",
                                                                            "1324.07", "89.51")  # fmt: skip
    missing = client.get("/v1/invoices/INV-X", headers=reader)
    assert error(missing)[:2] == (404, "not_found")
    assert missing.json()["error"]["message"] == "no invoice 'INV-X' for tenant 'acme'"  # the closing quote kept

    # a payment of 324.07 on INV-A: 1324.07 - 324.07 = 1000.00 still due
    pay = {"invoice_id": "INV-A", "amount": "324.07", "currency": "USD", "paid_at": "2026-12-05", "reference": "tr-1"}
    assert client.post("/v1/payments", json=pay, headers=reader).status_code == 403
    made = client.post("/v1/payments", json=pay, headers=admin)
    assert made.status_code == 201
    assert made.json()["allocations"] == [{"invoice_id": "INV-A", "number": "ACME-2026-000001", "amount": "324.07"}]
    again = client.post("/v1/payments", json=pay, headers=admin)  # a retry: counted once
    assert (again.status_code, again.json()["amount"]) == (200, "324.07")
    assert error(client.post("/v1/payments", json={**pay, "amount": "10.00"}, headers=admin))[::2] == (409, "reference")
    assert error(client.post("/v1/payments", json={**pay, "amount": 10.5, "reference": "tr-f"},
                             headers=admin))[::2] == (422, "amount")  # fmt: skip
    over = client.post("/v1/payments", json={**pay, "amount": "1000.01", "reference": "tr-2"}, headers=admin)
    assert error(over)[::2] == (422, "amount") and "1000.00" in over.json()["error"]["message"]
    eur = client.post("/v1/payments", json={**pay, "currency": "EUR", "reference": "tr-3"}, headers=admin)
    assert error(eur)[::2] == (422, "currency")
    inv_a = client.get("/v1/invoices", params={"customer": "cust-1"}, headers=reader).json()["items"][0]
    assert (inv_a["status"], inv_a["paid"], inv_a["amount_due"]) == ("partially_paid", "324.07", "1000.00")

    # a partial credit note of 100.00: due 1000.00 -> 900.00, all of it credit
    note = {"invoice_id": "INV-A", "reason": "storage overbilled", "lines": [{"description": "storage",
                                                                              "amount": "100.00"}]}  # fmt: skip
    cn = client.post("/v1/credit_notes", json=note, headers=admin)
    assert cn.status_code == 201
    assert {k: cn.json()[k] for k in ("number", "invoice_number", "total", "credit", "refund", "status")} == {
        "number": "ACME-CN-2026-000001", "invoice_number": "ACME-2026-000001", "total": "100.00",
        "credit": "100.00", "refund": "0.00", "status": "applied"}  # fmt: skip
    # a full credit note: what is left to credit, 1324.07 - 100.00 = 1224.07; 900.00 of it cancels what is due,
    # 1224.07 - 900.00 = 324.07 (the payment) is owed back
    full = client.post("/v1/credit_notes", json={"invoice_id": "INV-A", "reason": "cancelled", "lines": None},
                       headers=admin)  # fmt: skip
    assert full.status_code == 201
    assert [full.json()[k] for k in ("total", "credit", "refund", "status")] == ["1224.07", "900.00", "324.07",
                                                                               "refund_due"]  # fmt: skip
    more = client.post("/v1/credit_notes", json=note, headers=admin)
    assert error(more)[::2] == (422, "amount")
    bad_line = client.post("/v1/credit_notes", json={**note, "lines": [{"description": "x", "amount": "1.001"}]},
                           headers=admin)  # fmt: skip
    assert error(bad_line)[::2] == (422, "lines[0].amount")
    notes = client.get("/v1/credit_notes", params={"invoice_id": "INV-A"}, headers=reader).json()["items"]
    assert [n["number"] for n in notes] == ["ACME-CN-2026-000001", "ACME-CN-2026-000002"]
    inv_a = client.get("/v1/invoices", params={"customer": "cust-1"}, headers=reader).json()["items"][0]
    assert (inv_a["status"], inv_a["credited"], inv_a["amount_due"]) == ("paid", "1324.07", "0.00")

    # void: INV-A has money on it (409 naming status), INV-B has none, the draft has nothing to void
    assert error(client.post("/v1/invoices/INV-A/void", json={"reason": "x"}, headers=admin))[::2] == (409, "status")
    assert error(client.post("/v1/invoices/INV-C/void", json={"reason": "x"}, headers=admin))[::2] == (409, "status")
    assert error(client.post("/v1/invoices/INV-B/void", json={}, headers=admin))[::2] == (422, "reason")
    voided = client.post("/v1/invoices/INV-B/void", json={"reason": "sent twice"}, headers=admin)
    assert voided.status_code == 200
    assert (voided.json()["status"], voided.json()["void_reason"], voided.json()["amount_due"]) == (
        "voided",
        "sent twice",
        "0.00",
    )
    assert error(client.post("/v1/payments", json={**pay, "invoice_id": "INV-B", "reference": "tr-4"},
                             headers=admin))[::2] == (409, "status")  # fmt: skip

    payments = client.get("/v1/payments", headers=reader).json()["items"]
    assert [(p["reference"], p["amount"], p["paid_at"]) for p in payments] == [("tr-1", "324.07", "2026-12-05")]

    # the December export: both numbered invoices (the voided one too), both credit notes, the payment
    export = client.get("/v1/exports/2026-12.json", headers=reader)
    assert export.status_code == 200 and export.headers["content-type"] == "application/json"
    body = orjson.loads(export.content)
    assert [(i["number"], i["status"], i["amount_due"]) for i in body["invoices"]] == [
        ("ACME-2026-000001", "paid", "0.00"), ("ACME-2026-000002", "voided", "0.00")]  # fmt: skip
    assert [n["total"] for n in body["credit_notes"]] == ["100.00", "1224.07"]
    assert [p["reference"] for p in body["payments"]] == ["tr-1"]
    rows = list(csv.DictReader(io.StringIO(client.get("/v1/exports/2026-12.csv", headers=reader).text)))
    assert [(r["number"], r["total"], r["credited"], r["paid"]) for r in rows] == [
        ("ACME-2026-000001", "1324.07", "1324.07", "324.07"),
        ("ACME-2026-000002", "1324.07", "0.00", "0.00"),
    ]
    pay_csv = client.get("/v1/exports/2026-12.csv", params={"kind": "payments"}, headers=reader)
    assert pay_csv.headers["content-type"].startswith("text/csv")
    assert pay_csv.text.splitlines()[1] == "tr-1,2026-12-05,cust-1,USD,324.07,ACME-2026-000001,INV-A,324.07"
    assert orjson.loads(client.get("/v1/exports/2026-11.json", headers=reader).content)["invoices"] == []
    assert error(client.get("/v1/exports/2026-13.json", headers=reader))[::2] == (422, "month")
    assert error(client.get("/v1/exports/2026-12.csv", params={"kind": "fees"}, headers=reader))[::2] == (422, "kind")


def test_customer_payment_is_spread_oldest_due_first(client: TestClient) -> None:
    admin = key(client)
    sf = _sf(client)
    store_invoice(sf, TENANT, "INV-1", "cust-9", issue_date=date(2026, 11, 1), due_date=date(2026, 11, 30))
    store_invoice(sf, TENANT, "INV-2", "cust-9", issue_date=date(2026, 12, 1), due_date=date(2026, 12, 31))
    # 1500.00: INV-1 (due first) takes all its 1324.07, INV-2 the rest, 1500.00 - 1324.07 = 175.93
    bulk = {"customer": "cust-9", "amount": "1500.00", "currency": "USD", "paid_at": "2026-12-10", "reference": "b1"}
    made = client.post("/v1/payments", json=bulk, headers=admin)
    assert made.status_code == 201, made.text
    assert [(a["invoice_id"], a["amount"]) for a in made.json()["allocations"]] == [("INV-1", "1324.07"),
                                                                                   ("INV-2", "175.93")]  # fmt: skip
    neither = client.post("/v1/payments", json={"amount": "1.00", "currency": "USD", "paid_at": "2026-12-10",
                                                "reference": "r"}, headers=admin)  # fmt: skip
    assert error(neither)[::2] == (422, "invoice_id")


@pytest.fixture
def sqlite_client(tmp_path) -> TestClient:  # type: ignore[no-untyped-def]
    with TestClient(offline_app(tmp_path)) as c:
        yield c


def test_html_and_pdf_of_a_stored_invoice(sqlite_client: TestClient) -> None:
    c = sqlite_client
    reader = key(c, "read")
    store_invoice(_sf(c), TENANT, "INV-R", "cust-1")
    page = c.get("/v1/invoices/INV-R.html", headers=reader)
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert "ACME-2026-000001" in page.text and "$1,324.07" in page.text and "Issued" in page.text
    german = c.get("/v1/invoices/INV-R.html", params={"locale": "de_DE"}, headers=reader).text
    assert "1.324,07" in german  # the amount in the German way
    assert error(c.get("/v1/invoices/INV-R.html", params={"locale": "xx_YY"}, headers=reader))[::2] == (422, "locale")
    pdf = c.get("/v1/invoices/INV-R.pdf", headers=reader)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and 'filename="ACME-2026-000001.pdf"' in pdf.headers["content-disposition"]
    # paid in full: the page shows the record's status now, not the one stamped at finalization
    admin = key(c)
    c.post("/v1/payments", json={"invoice_id": "INV-R", "amount": TOTAL, "currency": "USD", "paid_at": "2026-12-03",
                                 "reference": "p"}, headers=admin)  # fmt: skip
    assert 'class="status status-paid">Paid<' in c.get("/v1/invoices/INV-R.html", headers=reader).text
    assert error(c.get("/v1/invoices/NOPE.pdf", headers=reader))[:2] == (404, "not_found")


def test_html_and_pdf_of_a_credit_note(sqlite_client: TestClient) -> None:
    """The stored sample (1,324.07 USD, 7.25 % sales tax) paid 1,000.00, then 500.00 credited, tax included: net
    500.00 / 1.0725 = 466.200.. -> 466.20, tax 33.80; 324.07 was still due, so 324.07 comes off it and 175.93 is
    owed back (refund due)."""
    c = sqlite_client
    reader, admin = key(c, "read"), key(c)
    store_invoice(_sf(c), TENANT, "INV-R", "cust-1")
    c.post("/v1/payments", json={"invoice_id": "INV-R", "amount": "1000.00", "currency": "USD",
                                 "paid_at": "2026-12-02", "reference": "p"}, headers=admin)  # fmt: skip
    made = c.post("/v1/credit_notes", json={"invoice_id": "INV-R", "reason": "service outage", "lines": [
        {"description": "Outage credit", "amount": "500.00"}]}, headers=admin).json()  # fmt: skip
    assert (made["credit"], made["refund"], made["status"]) == ("324.07", "175.93", "refund_due")
    cn = made["credit_note_id"]
    page = c.get(f"/v1/credit_notes/{cn}.html", headers=reader)
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert 'filename="ACME-CN-2026-000001.html"' in page.headers["content-disposition"]
    for expected in ("<h1>Credit note</h1>", "ACME-2026-000001", "service outage", "Outage credit", "$466.20",
                     "$33.80", "$500.00", "$324.07", "$175.93", "Refund due"):  # fmt: skip
        assert expected in page.text, expected
    german = c.get(f"/v1/credit_notes/{cn}.html", params={"locale": "de_DE"}, headers=reader).text
    assert "<h1>Rechnungskorrektur</h1>" in german and "466,20" in german
    pdf = c.get(f"/v1/credit_notes/{cn}.pdf", headers=reader)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert (
        pdf.content.startswith(b"%PDF-") and 'filename="ACME-CN-2026-000001.pdf"' in pdf.headers["content-disposition"]
    )
    assert error(c.get(f"/v1/credit_notes/{cn}.pdf", params={"locale": "xx_YY"}, headers=reader))[::2] == (
        422,
        "locale",
    )
    assert error(c.get("/v1/credit_notes/NOPE.pdf", headers=reader))[:2] == (404, "not_found")
    assert c.get(f"/v1/credit_notes/{cn}.pdf").status_code == 401


def test_a_version_1_document_is_served_as_version_2_and_junk_is_refused(sqlite_client: TestClient) -> None:
    c = sqlite_client
    reader = key(c, "read")
    v1 = (Path(__file__).resolve().parents[1] / "documents" / "data" / "v1_cloudco_org-000.json").read_bytes()
    raw = orjson.loads(v1)
    invoices.upsert_draft(_sf(c), tenant=TENANT, invoice_id="INV-V1", customer=raw["customer"], period=raw["period"],
                          currency=raw["currency"], total=raw["total"], issue_date=date(2026, 12, 1),
                          due_date=date(2026, 12, 31), document=v1)  # fmt: skip
    got = decode(c.get("/v1/invoices/INV-V1", headers=reader).content)
    # version 1 "final" is version 2 "finalized" (schemas/invoice.py from_v1)
    assert (got.schema_version, got.id, got.status, str(got.total)) == (2, raw["invoice_id"], "finalized", "1890.04")
    invoices.upsert_draft(_sf(c), tenant=TENANT, invoice_id="INV-J", customer="c", period="2026-11", currency="EUR",
                          total="1.00", issue_date=date(2026, 12, 1), due_date=date(2026, 12, 1),
                          document=b'{"total": "1.00"}')  # fmt: skip
    assert error(c.get("/v1/invoices/INV-J", headers=reader))[::2] == (422, "document")
    assert error(c.get("/v1/invoices/INV-J.html", headers=reader))[::2] == (422, "document")


def test_mark_overdue(client: TestClient) -> None:
    admin, reader = key(client), key(client, "read")
    sf = _sf(client)
    store_invoice(sf, TENANT, "INV-OLD", "c1", issue_date=date(2026, 11, 1), due_date=date(2026, 11, 30))
    store_invoice(sf, TENANT, "INV-NEW", "c1", issue_date=date(2026, 12, 1), due_date=date(2026, 12, 31))
    store_invoice(sf, TENANT, "INV-PAID", "c2", issue_date=date(2026, 11, 1), due_date=date(2026, 11, 30))
    store_invoice(sf, "other-tenant", "INV-O", "c1", issue_date=date(2026, 11, 1), due_date=date(2026, 11, 30))
    pay = {"invoice_id": "INV-PAID", "amount": TOTAL, "currency": "USD", "paid_at": "2026-11-20", "reference": "p1"}
    assert client.post("/v1/payments", json=pay, headers=admin).status_code == 201
    assert client.post("/v1/invoices/mark_overdue", json={"today": "2026-12-31"}, headers=reader).status_code == 403
    # on Dec 31: INV-OLD (due Nov 30, 1324.07 due) is overdue; INV-NEW is due that day, not yet; INV-PAID owes 0
    marked = client.post("/v1/invoices/mark_overdue", json={"today": "2026-12-31"}, headers=admin)
    assert marked.status_code == 200
    assert [(i["invoice_id"], i["status"], i["amount_due"]) for i in marked.json()["items"]] == [
        ("INV-OLD", "overdue", TOTAL)]  # fmt: skip
    # a part payment keeps it overdue: 1324.07 - 24.07 = 1300.00 still due
    client.post("/v1/payments", json={**pay, "invoice_id": "INV-OLD", "amount": "24.07", "reference": "p2"},
                headers=admin)  # fmt: skip
    overdue = client.get("/v1/invoices", params={"status": "overdue"}, headers=reader).json()["items"]
    assert [(i["invoice_id"], i["amount_due"]) for i in overdue] == [("INV-OLD", "1300.00")]
    assert client.post("/v1/invoices/mark_overdue", json={"today": "2026-12-31"}, headers=admin).json()["items"] == []


# --- pages -------------------------------------------------------------------------------------------------


def _all_pages(c: TestClient, path: str, headers: dict[str, str], **params: object) -> list[list[dict]]:
    pages, cursor = [], None
    while True:
        got = c.get(path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert got.status_code == 200, got.text
        pages.append(got.json()["items"])
        cursor = got.json()["next_cursor"]
        if cursor is None:
            return pages


def test_invoice_lists_page_by_cursor(client: TestClient) -> None:
    admin, reader = key(client), key(client, "read")
    sf = _sf(client)
    # five finalized (numbered 1..5 in this order) on three days, two drafts; the order is (issue date, number,
    # drafts last): Dec 1: 000002, 000004, D-1 | Dec 2: 000001, 000005, D-2 | Dec 3: 000003
    days = {"A": 2, "B": 1, "C": 3, "D": 1, "E": 2}
    for name, day in days.items():
        store_invoice(sf, TENANT, f"INV-{name}", "cust-1", issue_date=date(2026, 12, day), due_date=date(2027, 1, 5))
    store_invoice(sf, TENANT, "INV-D1", "cust-2", finalize=False, issue_date=date(2026, 12, 1))
    store_invoice(sf, TENANT, "INV-D2", "cust-2", finalize=False, issue_date=date(2026, 12, 2))
    store_invoice(sf, "other-tenant", "INV-X", "cust-1")
    expected = ["INV-B", "INV-D", "INV-D1", "INV-A", "INV-E", "INV-D2", "INV-C"]
    pages = _all_pages(client, "/v1/invoices", reader, limit=3)
    assert [[i["invoice_id"] for i in p] for p in pages] == [expected[:3], expected[3:6], expected[6:]]
    assert [i["number"] for i in pages[0]] == ["ACME-2026-000002", "ACME-2026-000004", None]
    # an exact multiple of the page: the last full page says there is no next one
    pages = _all_pages(client, "/v1/invoices", reader, limit=7)
    assert [len(p) for p in pages] == [7]
    # filters hold across pages: cust-1's five
    pages = _all_pages(client, "/v1/invoices", reader, limit=2, customer="cust-1")
    assert [i["invoice_id"] for p in pages for i in p] == ["INV-B", "INV-D", "INV-A", "INV-E", "INV-C"]
    assert [len(p) for p in pages] == [2, 2, 1]

    # an invoice issued on an earlier day while a client pages does not shift the pages after the cursor
    first = client.get("/v1/invoices", params={"limit": 2}, headers=reader).json()
    store_invoice(sf, TENANT, "INV-EARLY", "cust-3", issue_date=date(2026, 11, 30), due_date=date(2026, 12, 30))
    rest = _all_pages(client, "/v1/invoices", reader, limit=2, cursor=first["next_cursor"])
    assert [i["invoice_id"] for i in first["items"]] + [i["invoice_id"] for p in rest for i in p] == expected

    assert error(client.get("/v1/invoices", params={"cursor": "bm90IGEgY3Vyc29y"}, headers=reader))[::2] == (
        422, "cursor")  # fmt: skip
    assert error(client.get("/v1/invoices", params={"limit": 0}, headers=reader))[::2] == (422, "limit")
    assert error(client.get("/v1/invoices", params={"limit": 1001}, headers=reader))[::2] == (422, "limit")
    # a cursor of the payments list is not one of the invoices list
    for n in range(3):
        pay = {"invoice_id": "INV-C", "amount": "1.00", "currency": "USD", "paid_at": f"2026-12-0{5 - n}",
               "reference": f"p{n}"}  # fmt: skip
        assert client.post("/v1/payments", json=pay, headers=admin).status_code == 201
    pay_page = client.get("/v1/payments", params={"limit": 2}, headers=reader).json()
    assert error(client.get("/v1/invoices", params={"cursor": pay_page["next_cursor"]}, headers=reader))[::2] == (
        422, "cursor")  # fmt: skip


def test_payment_and_credit_note_lists_page_by_cursor(client: TestClient) -> None:
    admin, reader = key(client), key(client, "read")
    sf = _sf(client)
    store_invoice(sf, TENANT, "INV-A", "cust-1")
    # five payments of 1.00: paid Dec 9, 5, 7, 5, 6 (recorded in that order); by date then the order recorded:
    # p1 (5th), p3 (5th), p4 (6th), p2 (7th), p0 (9th)
    for n, day in enumerate((9, 5, 7, 5, 6)):
        pay = {"invoice_id": "INV-A", "amount": "1.00", "currency": "USD", "paid_at": f"2026-12-0{day}",
               "reference": f"p{n}"}  # fmt: skip
        assert client.post("/v1/payments", json=pay, headers=admin).status_code == 201
    pages = _all_pages(client, "/v1/payments", reader, limit=2)
    assert [[p["reference"] for p in page] for page in pages] == [["p1", "p3"], ["p4", "p2"], ["p0"]]
    assert _all_pages(client, "/v1/payments", reader, limit=2, customer="cust-9") == [[]]

    # three credit notes of 2.00, 3.00, 4.00: numbered CN 1, 2, 3 in the order issued
    for amount in ("2.00", "3.00", "4.00"):
        body = {"invoice_id": "INV-A", "reason": "goodwill", "lines": [{"description": "credit", "amount": amount}]}
        assert client.post("/v1/credit_notes", json=body, headers=admin).status_code == 201
    pages = _all_pages(client, "/v1/credit_notes", reader, limit=2)
    assert [[n["total"] for n in page] for page in pages] == [["2.00", "3.00"], ["4.00"]]
    assert [n["number"] for page in pages for n in page] == ["ACME-CN-2026-000001", "ACME-CN-2026-000002",
                                                             "ACME-CN-2026-000003"]  # fmt: skip


# --- the e-invoice -----------------------------------------------------------------------------------------


def test_the_ubl_e_invoice_of_a_stored_invoice(sqlite_client: TestClient) -> None:
    """The stored sample (1,234.56 + 7.25 % sales tax 89.51 = 1,324.07 USD) with a seller VAT id is served as
    UBL 2.1 XML; the sample's own seller has no tax id, which EN 16931 requires (BR-CO-26): 422 naming it."""
    from importlib.resources import files

    import msgspec
    from finance_helpers import v2_draft
    from lxml import etree

    from meterstream.documents.ubl import NS
    from meterstream.schemas.invoice import encode

    c = sqlite_client
    reader = key(c, "read")
    sf = _sf(c)
    store_invoice(sf, TENANT, "INV-NOID", "cust-1")
    doc = v2_draft(TENANT, "INV-U", "cust-1")
    doc = msgspec.structs.replace(doc, issuer=msgspec.structs.replace(doc.issuer, tax_id="US12345678"))
    invoices.upsert_draft(sf, tenant=TENANT, invoice_id="INV-U", customer="cust-1", period=doc.period,
                          currency=doc.currency, total=doc.total, amount_due=doc.amount_due,
                          issue_date=date(2026, 12, 1), due_date=date(2026, 12, 31), document=encode(doc))  # fmt: skip
    assert error(c.get("/v1/invoices/INV-U/ubl", headers=reader))[::2] == (409, "status")  # a draft: none yet
    invoices.finalize(sf, TENANT, "INV-U", "ACME", "INV", datetime(2026, 12, 1, 9, tzinfo=UTC))

    got = c.get("/v1/invoices/INV-U/ubl", headers=reader)
    assert got.status_code == 200 and got.headers["content-type"] == "application/xml"
    assert 'filename="ACME-2026-000002.xml"' in got.headers["content-disposition"]
    root = etree.fromstring(got.content)
    schema = etree.XMLSchema(etree.parse(str(files("peppol") / "schema" / "maindoc" / "UBL-Invoice-2.1.xsd")))
    assert schema.validate(root), schema.error_log
    assert root.findtext("cbc:ID", namespaces=NS) == "ACME-2026-000002"
    assert [root.findtext(f"cac:LegalMonetaryTotal/cbc:{n}", namespaces=NS) for n in
            ("LineExtensionAmount", "TaxExclusiveAmount", "TaxInclusiveAmount", "PayableAmount")] == [
        "1234.56", "1234.56", "1324.07", "1324.07"]  # fmt: skip

    # a credit note of 107.25, tax included, at the invoice's 7.25 %: 107.25 / 1.0725 = 100.00 net + 7.25 tax
    admin = key(c)
    made = c.post(
        "/v1/credit_notes",
        json={"invoice_id": "INV-U", "reason": "goodwill", "lines": [{"description": "Goodwill", "amount": "107.25"}]},
        headers=admin,
    )
    note = c.get(f"/v1/credit_notes/{made.json()['credit_note_id']}/ubl", headers=reader)
    assert note.status_code == 200 and note.headers["content-type"] == "application/xml"
    cn = etree.fromstring(note.content)
    cn_schema = etree.XMLSchema(etree.parse(str(files("peppol") / "schema" / "maindoc" / "UBL-CreditNote-2.1.xsd")))
    assert cn_schema.validate(cn), cn_schema.error_log
    assert [cn.findtext(p, namespaces=NS) for p in (
        "cbc:ID", "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID", "cac:TaxTotal/cac:TaxSubtotal/"
        "cbc:TaxableAmount", "cac:TaxTotal/cbc:TaxAmount", "cac:LegalMonetaryTotal/cbc:PayableAmount")] == [
        "ACME-CN-2026-000001", "ACME-2026-000002", "100.00", "7.25", "107.25"]  # fmt: skip
    assert error(c.get("/v1/credit_notes/NOPE/ubl", headers=reader))[:2] == (404, "not_found")

    refused = c.get("/v1/invoices/INV-NOID/ubl", headers=reader)
    assert error(refused)[::2] == (422, "document.issuer.tax_id") and "BR-CO-26" in refused.json()["error"]["message"]
    assert error(c.get("/v1/invoices/NOPE/ubl", headers=reader))[:2] == (404, "not_found")


def test_credit_note_estimate_checks_as_issued_and_writes_nothing(client: TestClient) -> None:
    """1,324.07 USD billed, 1,000.00 paid, so 324.07 due: a 500.00 note would cancel the 324.07 and owe 175.93
    back; a full one (lines null) is 1,324.07: 324.07 cancelled, 1,000.00 owed back. On SQLite and PostgreSQL."""
    admin, reader = key(client), key(client, "read")
    store_invoice(_sf(client), TENANT, "INV-A", "cust-1")
    paid = {"invoice_id": "INV-A", "amount": "1000.00", "currency": "USD", "paid_at": "2026-12-05", "reference": "w-1"}
    assert client.post("/v1/payments", json=paid, headers=admin).status_code == 201
    body = {"invoice_id": "INV-A", "lines": [{"description": "storage", "amount": "500.00"}]}
    got = client.post("/v1/credit_notes/estimate", json=body, headers=reader)
    assert got.status_code == 200, got.text
    assert got.json() == {"invoice_id": "INV-A", "currency": "USD", "total": "500.00", "credit": "324.07",
                          "refund": "175.93", "creditable": "1324.07"}  # fmt: skip
    full = client.post("/v1/credit_notes/estimate", json={"invoice_id": "INV-A"}, headers=reader).json()
    assert (full["total"], full["credit"], full["refund"]) == ("1324.07", "324.07", "1000.00")
    assert client.get("/v1/credit_notes", headers=reader).json()["items"] == []  # nothing issued
    assert client.get("/v1/invoices/INV-A", headers=reader).status_code == 200
    too_much = {"invoice_id": "INV-A", "lines": [{"description": "x", "amount": "1324.08"}]}
    assert error(client.post("/v1/credit_notes/estimate", json=too_much, headers=reader))[::2] == (422, "amount")
    assert client.post("/v1/credit_notes/estimate", json={"invoice_id": "NOPE"}, headers=reader).status_code == 404


def test_a_refund_paid_back_is_recorded(client: TestClient) -> None:
    """1,324.07 billed, 1,000.00 paid, a 500.00 credit note: 324.07 off the amount due, 175.93 owed back; finance
    pays it back by transfer tr-7 and records it (SQLite and PostgreSQL)."""
    admin, reader = key(client), key(client, "read")
    store_invoice(_sf(client), TENANT, "INV-A", "cust-1")
    paid = {"invoice_id": "INV-A", "amount": "1000.00", "currency": "USD", "paid_at": "2026-12-05", "reference": "w-1"}
    assert client.post("/v1/payments", json=paid, headers=admin).status_code == 201
    note = client.post(
        "/v1/credit_notes",
        headers=admin,
        json={"invoice_id": "INV-A", "reason": "storage", "lines": [{"description": "storage", "amount": "500.00"}]},
    ).json()
    assert (note["status"], note["refund"], note["refunded_on"]) == ("refund_due", "175.93", None)  # fmt: skip
    path = f"/v1/credit_notes/{note['credit_note_id']}/refund"
    today = datetime.now(UTC).date().isoformat()
    assert client.post(path, json={"reference": "tr-7"}, headers=reader).status_code == 403  # an admin's act
    done = client.post(path, json={"reference": "tr-7"}, headers=admin)
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["refunded_on"], done.json()["refund_reference"]) == (
        "refunded", today, "tr-7")  # fmt: skip
    assert client.post(path, json={"reference": "tr-7"}, headers=admin).json() == done.json()  # the same again
    assert error(client.post(path, json={"reference": "tr-8"}, headers=admin))[::2] == (409, "refunded_on")
    assert error(client.post(path, json={"refunded_on": "2026-01-01"}, headers=admin))[::2] == (409, "refunded_on")
    listed = client.get("/v1/credit_notes", headers=reader).json()["items"]
    assert [(n["status"], n["refund_reference"]) for n in listed] == [("refunded", "tr-7")]
    assert client.post("/v1/credit_notes/nope/refund", json={}, headers=admin).status_code == 404
