"""`meterstream invoices|payments|credit-notes|export` (deploy/cli_invoices.py) on the SQLite store of
METERSTREAM_HOME, over invoices stored with a hand-checked version 2 document (tests/api/finance_helpers.py:
1234.56 USD + 89.51 sales tax = 1324.07). Expected figures are worked out by hand from the commands' amounts.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from finance_helpers import TOTAL, store_invoice

from meterstream.deploy.cli import main
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.schemas.settings import Settings

T = "acme"


@pytest.fixture
def sf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("METERSTREAM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("METERSTREAM_DATABASE_URL", raising=False)
    settings = Settings()
    engine = make_engine(settings)
    migrate(settings, engine)
    yield session_factory(engine)
    engine.dispose()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_finance_commands(sf, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    store_invoice(sf, T, "INV-A", "cust-1")
    store_invoice(sf, T, "INV-B", "cust-2", finalize=False)

    code, out, _ = _run(capsys, "invoices", "list", "--tenant", T, "--json")
    assert code == 0
    assert [(i["invoice_id"], i["number"], i["status"], i["total"]) for i in json.loads(out)] == [
        ("INV-A", "ACME-2026-000001", "finalized", TOTAL), ("INV-B", None, "draft", TOTAL)]  # fmt: skip
    code, out, _ = _run(capsys, "invoices", "list", "--tenant", T, "--status", "draft", "--json")
    assert [i["invoice_id"] for i in json.loads(out)] == ["INV-B"]
    code, out, _ = _run(capsys, "invoices", "list", "--tenant", T)  # not a terminal: tab-separated lines
    assert code == 0 and out.splitlines()[1].split("\t") == [
        "ACME-2026-000001",
        "INV-A",
        "finalized",
        "cust-1",
        "2026-11",
        "2026-12-01",
        "2026-12-31",
        "USD",
        TOTAL,
        TOTAL,
    ]

    code, out, _ = _run(capsys, "invoices", "show", "INV-A", "--tenant", T)
    doc = json.loads(out)
    assert (code, doc["schema_version"], doc["number"], doc["total"], doc["tax_total"]) == (
        0, 2, "ACME-2026-000001", "1324.07", "89.51")  # fmt: skip

    # 1000.00 of 1324.07 paid: 324.07 due
    code, out, _ = _run(capsys, "payments", "record", "--tenant", T, "--invoice", "INV-A", "--amount", "1000.00",
                        "--currency", "USD", "--paid-at", "2026-12-04", "--reference", "bank-77", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["allocations"][0]["amount"] == "1000.00"
    code, out, _ = _run(capsys, "invoices", "show", "INV-A", "--tenant", T, "--record")
    assert (json.loads(out)["status"], json.loads(out)["amount_due"]) == ("partially_paid", "324.07")
    # more than the 324.07 due: one line naming the field, exit 1, no traceback
    code, out, err = _run(capsys, "payments", "record", "--tenant", T, "--customer", "cust-1", "--amount", "400",
                          "--currency", "USD", "--paid-at", "2026-12-05", "--reference", "bank-78")  # fmt: skip
    assert code == 1 and out == ""
    assert err.startswith("meterstream payments: error: amount: 400.00 USD is more than the amount due 324.07 USD")
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    code, _, err = _run(capsys, "payments", "record", "--tenant", T, "--invoice", "INV-A", "--amount", "1",
                        "--currency", "USD", "--paid-at", "5.12.2026", "--reference", "x")  # fmt: skip
    assert (code, err.strip()) == (1, "meterstream payments: error: paid_at: a date YYYY-MM-DD (got '5.12.2026')")

    # a credit note of 24.07 leaves 300.00 due; then the customer pays those 300.00: paid
    code, out, _ = _run(capsys, "credit-notes", "create", "--tenant", T, "--invoice", "INV-A", "--reason", "goodwill",
                        "--line", "storage", "24.07", "--issue-date", "2026-12-02", "--json")  # fmt: skip
    note = json.loads(out)
    assert (code, note["number"], note["total"], note["credit"], note["refund"]) == (
        0, "ACME-CN-2026-000001", "24.07", "24.07", "0.00")  # fmt: skip
    code, out, _ = _run(capsys, "payments", "record", "--tenant", T, "--customer", "cust-1", "--amount", "300.00",
                        "--currency", "USD", "--paid-at", "2026-12-07", "--reference", "bank-79")  # fmt: skip
    assert (code, out.strip()) == (0, "payment bank-79: 300.00 USD on 2026-12-07 -> ACME-2026-000001 300.00")
    code, out, _ = _run(capsys, "invoices", "show", "INV-A", "--tenant", T, "--record")
    assert (json.loads(out)["status"], json.loads(out)["amount_due"]) == ("paid", "0.00")
    code, out, _ = _run(capsys, "payments", "list", "--tenant", T, "--json")
    assert [(p["reference"], p["amount"]) for p in json.loads(out)] == [("bank-77", "1000.00"), ("bank-79", "300.00")]
    code, out, _ = _run(capsys, "credit-notes", "list", "--tenant", T, "--json")
    assert [n["number"] for n in json.loads(out)] == ["ACME-CN-2026-000001"]

    code, _, err = _run(capsys, "invoices", "void", "INV-A", "--tenant", T, "--reason", "oops")
    assert code == 1 and err.startswith("meterstream invoices: error: status: invoice 'INV-A' is paid")
    code, _, err = _run(capsys, "invoices", "show", "NOPE", "--tenant", T)
    assert (code, err.strip()) == (1, "meterstream invoices: error: no invoice 'NOPE' for tenant 'acme'")

    out_dir = tmp_path / "erp"
    code, out, _ = _run(capsys, "export", "--tenant", T, "--month", "2026-12", "--format", "csv", "--out", str(out_dir))
    assert code == 0 and out.splitlines()[-1] == "1 invoices, 1 credit notes, 2 payments of acme in 2026-12"
    invoices_csv = (out_dir / "acme-2026-12-invoices.csv").read_text().splitlines()
    assert invoices_csv[1].startswith("ACME-2026-000001,INV-A,paid,cust-1,2026-11,2026-12-01,2026-12-31,USD,"
                                      "1324.07,1324.07,24.07,1300.00,0.00")  # fmt: skip
    code, _, _ = _run(capsys, "export", "--tenant", T, "--month", "2026-12", "--format", "json", "--out", str(out_dir))
    body = json.loads((out_dir / "acme-2026-12.json").read_text())
    assert [p["amount"] for p in body["payments"]] == ["1000.00", "300.00"]
    code, _, err = _run(capsys, "export", "--tenant", T, "--month", "2026-13", "--format", "json", "--out", "x")
    assert (code, err.strip()) == (1, "meterstream export: error: month: YYYY-MM (got '2026-13')")


def test_render_a_stored_invoice_and_a_file(sf, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    store_invoice(sf, T, "INV-R", "cust-1")
    out_dir = tmp_path / "pages"
    code, out, _ = _run(capsys, "invoices", "render", "INV-R", "--tenant", T, "--format", "html", "--format", "pdf",
                        "--out", str(out_dir))  # fmt: skip
    assert code == 0 and out.split() == [str(out_dir / "ACME-2026-000001.html"), str(out_dir / "ACME-2026-000001.pdf")]
    assert "$1,324.07" in (out_dir / "ACME-2026-000001.html").read_text()
    assert (out_dir / "ACME-2026-000001.pdf").read_bytes().startswith(b"%PDF-")
    # a file as `meterstream close` writes it (version 1, tests/documents/data)
    v1 = Path(__file__).resolve().parents[1] / "documents" / "data" / "v1_cloudco_org-000.json"
    code, out, _ = _run(capsys, "invoices", "render", "--file", str(v1), "--format", "html", "--out", str(out_dir))
    assert code == 0 and out.strip() == str(out_dir / "v1_cloudco_org-000.html")
    code, _, err = _run(capsys, "invoices", "render", "INV-R", "--tenant", T, "--locale", "xx_YY", "--out", "o")
    assert code == 1 and "xx_YY" in err and len(err.splitlines()) == 1
    code, _, err = _run(capsys, "invoices", "render", "INV-R", "--out", str(out_dir))
    assert (code, err.strip()) == (1, "meterstream invoices: error: tenant: --tenant is required to render a stored "
                                      "invoice")  # fmt: skip


def test_render_a_credit_note(sf, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """107.25 credited, tax included, on the 7.25 % invoice: 107.25 / 1.0725 = 100.00 net + 7.25 tax, all of it off
    the amount due (nothing was paid). The sample's seller has no tax id, which the e-invoice needs (BR-CO-26):
    asking for xml too is refused in one line, and nothing is written."""
    from meterstream.entities import credit_notes

    store_invoice(sf, T, "INV-R", "cust-1")
    credit_notes.create_credit_note(sf, T, "INV-R", "goodwill", [{"description": "Goodwill", "amount": "107.25"}],
                                    credit_note_id="CN-1")  # fmt: skip
    out_dir = tmp_path / "notes"
    code, out, _ = _run(capsys, "credit-notes", "render", "CN-1", "--tenant", T, "--out", str(out_dir))
    assert code == 0 and out.split() == [str(out_dir / "ACME-CN-2026-000001.html"),
                                         str(out_dir / "ACME-CN-2026-000001.pdf")]  # fmt: skip
    page = (out_dir / "ACME-CN-2026-000001.html").read_text()
    for expected in ("Credit note", "ACME-2026-000001", "$100.00", "$7.25", "$107.25", "Deducted from the amount due"):
        assert expected in page, expected
    assert (out_dir / "ACME-CN-2026-000001.pdf").read_bytes().startswith(b"%PDF-")
    code, _, err = _run(capsys, "credit-notes", "render", "CN-1", "--tenant", T, "--format", "xml", "--format", "html",
                        "--out", str(tmp_path / "none"))  # fmt: skip
    assert (
        code == 1 and err.startswith("meterstream credit-notes: error: issuer.tax_id: ") and len(err.splitlines()) == 1
    )
    assert not (tmp_path / "none").exists()
    code, _, err = _run(capsys, "credit-notes", "render", "NOPE", "--tenant", T)
    assert code == 1 and "NOPE" in err


def test_mark_overdue(sf, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    store_invoice(sf, T, "INV-OLD", "cust-1", issue_date=date(2026, 11, 1), due_date=date(2026, 11, 30))
    store_invoice(sf, T, "INV-NEW", "cust-1", issue_date=date(2026, 12, 1), due_date=date(2026, 12, 31))
    code, out, _ = _run(capsys, "invoices", "mark-overdue", "--tenant", T, "--today", "2026-12-31")
    assert (code, out.splitlines()) == (0, [
        "overdue ACME-2026-000001 (INV-OLD): 1324.07 USD due since 2026-11-30",
        "1 invoices of acme marked overdue as of 2026-12-31"])  # fmt: skip


def test_a_refund_paid_back_from_the_cli(sf, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """1,324.07 paid in full, then a credit note of 10.00: nothing is due, so all 10.00 is owed back; finance pays it
    back by transfer tr-1 and records it today."""
    from datetime import UTC, datetime

    store_invoice(sf, T, "INV-A", "cust-1")
    assert _run(capsys, "payments", "record", "--tenant", T, "--invoice", "INV-A", "--amount", TOTAL, "--currency",
                "USD", "--paid-at", "2026-12-02", "--reference", "bank-1")[0] == 0  # fmt: skip
    code, out, _ = _run(capsys, "credit-notes", "create", "--tenant", T, "--invoice", "INV-A", "--reason", "goodwill",
                        "--line", "goodwill", "10.00", "--json")  # fmt: skip
    note = json.loads(out)
    assert (note["credit"], note["refund"], note["status"]) == ("0.00", "10.00", "refund_due")
    code, out, _ = _run(capsys, "credit-notes", "refund", note["credit_note_id"], "--tenant", T, "--reference", "tr-1")
    today = datetime.now(UTC).date()
    number = f"ACME-CN-{today.year}-000001"  # numbered in the year of its issue date (today)
    assert (code, out.strip()) == (0, f"credit note {number}: 10.00 USD refunded on {today} (tr-1)")
    code, _, err = _run(capsys, "credit-notes", "refund", note["credit_note_id"], "--tenant", T, "--on", "2026-12-01")
    assert code == 1 and err.startswith(f"meterstream credit-notes: error: refunded_on: credit note {number} "
                                        f"was refunded on {today} (tr-1)")  # fmt: skip
