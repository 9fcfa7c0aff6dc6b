"""`invoices.download` and `credit_notes.download` of lago-python-client 1.55.0, unchanged, on a real uvicorn server:
the invoice or credit note comes back with a `file_url` that serves its PDF without a key until it expires; a changed,
expired or foreign URL is refused (403).

The PDF's text is read back with pypdfium2 and holds the invoice's number and its total, 1,324.07 by hand
(tests/api/finance_helpers.py: 1000.00 + 234.56 + 7.25 % sales tax per line, 72.50 + 17.01).
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pypdfium2
import pytest
from finance_helpers import store_invoice
from lago_app import make_app
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from served_app import serve

from meterstream.api.compat.lago.files import INVOICES, LIFETIME_S, file_url
from meterstream.entities import credit_notes
from meterstream.webhooks.lago_keys import stored_keys

T = "t1"


@pytest.fixture
def lago(tmp_path: Path):  # type: ignore[no-untyped-def]
    with make_app(tmp_path) as client:
        key = client.app.state.keys.create(T, "read", "sdk")[1]  # a read key may download
        with serve(client.app) as base:
            yield Client(api_key=key, api_url=f"{base}/compat/lago/"), client.app, base


def pdf_text(data: bytes) -> str:
    doc = pypdfium2.PdfDocument(data)
    try:
        return "".join(page.get_textpage().get_text_range() for page in doc)
    finally:
        doc.close()


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"


def test_download_gives_a_url_that_serves_the_pdf(lago) -> None:  # type: ignore[no-untyped-def]
    sdk, app, base = lago
    sf = app.state.sessions
    store_invoice(sf, T, "INV-1", "globex")  # ACME-2026-000001
    store_invoice(sf, T, "INV-2", "globex")  # ACME-2026-000002
    store_invoice(sf, T, "INV-D", "globex", finalize=False)

    inv = sdk.invoices.download("INV-1")
    assert inv.lago_id == "INV-1" and inv.total_amount_cents == 132407
    assert inv.file_url.startswith(f"{base}/compat/lago/files/invoices/INV-1.pdf?")
    expires = int(parse_qs(urlsplit(inv.file_url).query)["expires"][0])
    assert abs(expires - (time.time() + LIFETIME_S)) < 60  # a week
    got = httpx.get(inv.file_url)  # no key
    assert got.status_code == 200 and got.headers["content-type"] == "application/pdf"
    assert got.content.startswith(b"%PDF")
    text = pdf_text(got.content)
    assert "ACME-2026-000001" in text and "1,324.07" in text

    assert sdk.invoices.download("INV-D").file_url is None  # a draft has no file
    assert sdk.invoices.find("INV-1").file_url is None  # only download makes one
    with pytest.raises(LagoApiError) as missing:
        sdk.invoices.download("NOPE")
    assert (missing.value.status_code, missing.value.response["code"]) == (404, "invoice_not_found")


def test_a_changed_expired_or_foreign_url_is_refused(lago) -> None:  # type: ignore[no-untyped-def]
    sdk, app, base = lago
    sf = app.state.sessions
    store_invoice(sf, T, "INV-1", "globex")
    store_invoice(sf, T, "INV-2", "globex")
    url = sdk.invoices.download("INV-1").file_url

    other_invoice = url.replace("/INV-1.pdf", "/INV-2.pdf")  # the signature names INV-1
    later = with_query(url, expires=str(int(time.time()) + 10 * LIFETIME_S))
    other_tenant = with_query(url, tenant="t2")
    nobody = with_query(url, tenant="nobody")
    for bad in (other_invoice, later, other_tenant, nobody, with_query(url, signature="x" * 43)):
        answer = httpx.get(bad)
        assert answer.status_code == 403 and answer.json()["code"] == "invalid_signature", bad
    assert stored_keys(sf, "nobody") is None  # a request without a key makes no keys

    expired = file_url(sf, base, INVOICES, T, "INV-1", now=time.time() - LIFETIME_S - 5)
    answer = httpx.get(expired)
    assert answer.status_code == 403 and answer.json()["code"] == "expired_url"
    assert httpx.get(url).status_code == 200  # the download's own URL still serves


def test_a_credit_note_download_serves_its_pdf(lago) -> None:  # type: ignore[no-untyped-def]
    """107.25 credited, tax included, on the 7.25 % invoice: 107.25 / 1.0725 = 100.00 net + 7.25 tax; nothing was
    paid, so it comes off the amount due (offset 10725 cents). The credit note is given the id INV-1, the invoice's:
    the invoice's URL with its kind changed does not serve it (the signature names the kind)."""
    sdk, app, base = lago
    sf = app.state.sessions
    store_invoice(sf, T, "INV-1", "globex")
    credit_notes.create_credit_note(sf, T, "INV-1", "goodwill", [{"description": "Goodwill", "amount": "107.25"}],
                                    credit_note_id="INV-1", today=date(2026, 12, 2))  # fmt: skip

    note = sdk.credit_notes.download("INV-1")
    assert (note.lago_id, note.number, note.total_amount_cents, note.offset_amount_cents, note.refund_amount_cents) == (
        "INV-1", "ACME-CN-2026-000001", 10725, 10725, 0)  # fmt: skip
    assert note.file_url.startswith(f"{base}/compat/lago/files/credit_notes/INV-1.pdf?")
    got = httpx.get(note.file_url)  # no key
    assert got.status_code == 200 and got.headers["content-type"] == "application/pdf"
    text = pdf_text(got.content)
    for expected in ("Credit note", "ACME-CN-2026-000001", "ACME-2026-000001", "$100.00", "$7.25", "$107.25"):
        assert expected in text, expected

    invoice_url = sdk.invoices.download("INV-1").file_url
    as_credit_note = invoice_url.replace("/files/invoices/", "/files/credit_notes/")
    answer = httpx.get(as_credit_note)
    assert answer.status_code == 403 and answer.json()["code"] == "invalid_signature"
    answer = httpx.get(note.file_url.replace("/files/credit_notes/", "/files/invoices/"))
    assert answer.status_code == 403 and answer.json()["code"] == "invalid_signature"
    with pytest.raises(LagoApiError) as missing:
        sdk.credit_notes.download("NOPE")
    assert (missing.value.status_code, missing.value.response["code"]) == (404, "credit_note_not_found")
