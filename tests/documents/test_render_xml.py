"""The e-invoice through the rendering path: `render_invoice(..., formats=("xml",))` and
`meterstream invoices render --file ... --format xml` (the CLI's stored-invoice path: tests/api/test_invoices_api.py
covers the same bytes through the API)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import msgspec
import pytest
from invoice_samples import DATA
from lxml import etree

from meterstream.deploy.cli import main
from meterstream.documents.render import render_invoice
from meterstream.documents.ubl import NS
from meterstream.schemas.invoice import decode, encode

EXAMPLE = DATA / "invoice_v2_example.json"


@pytest.fixture(scope="module")
def ubl_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(files("peppol") / "schema" / "maindoc" / "UBL-Invoice-2.1.xsd")))


def test_render_xml_alone_and_with_html(tmp_path: Path, ubl_schema) -> None:
    written = render_invoice(EXAMPLE, tmp_path / "a", formats=("xml",))
    assert written == {"xml": tmp_path / "a" / "invoice_v2_example.xml"}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["invoice_v2_example.xml"]  # no HTML, no PDF
    root = etree.parse(str(written["xml"])).getroot()
    assert ubl_schema.validate(root), ubl_schema.error_log
    # the example's number and what it asks for: 533.30 - 53.33 discount + 0 tax - 20.00 credits = 459.97
    assert root.findtext("cbc:ID", namespaces=NS) == "MSD-2026-000123"
    assert root.findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=NS) == "459.97"

    both = render_invoice(EXAMPLE, tmp_path / "b", formats=("html", "xml"))
    assert sorted(both) == ["html", "xml"]
    assert both["xml"].read_bytes() == written["xml"].read_bytes()  # the same bytes every time
    assert "MSD-2026-000123" in both["html"].read_text()


def test_a_draft_has_no_xml_and_nothing_is_written(tmp_path: Path) -> None:
    draft = msgspec.structs.replace(decode(EXAMPLE.read_bytes()), status="draft", number=None)
    source = tmp_path / "draft.json"
    source.write_bytes(encode(draft))
    with pytest.raises(ValueError, match=r"draft\.json: number: the invoice has no number yet \(status draft\)"):
        render_invoice(source, tmp_path / "out", formats=("html", "xml"))
    assert not (tmp_path / "out").exists()


def test_an_unknown_format_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^formats: 'ubl' is not one of html, pdf, png, xml$"):
        render_invoice(EXAMPLE, tmp_path, formats=("ubl",))


def test_cli_render_file_as_xml(tmp_path: Path, capsys: pytest.CaptureFixture[str], v1_path: Path) -> None:
    code = main(["invoices", "render", "--file", str(EXAMPLE), "--format", "xml", "--out", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert (code, out.strip()) == (0, str(tmp_path / "invoice_v2_example.xml"))
    assert etree.parse(str(tmp_path / "invoice_v2_example.xml")).getroot().findtext(
        "cbc:ID", namespaces=NS) == "MSD-2026-000123"  # fmt: skip
    # a version 1 invoice (the demo's, before numbers) has no number: one line naming the field, exit 1
    code = main(["invoices", "render", "--file", str(v1_path), "--format", "xml", "--out", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 1
    assert err.startswith("meterstream invoices: error: ") and ": number: the invoice has no number yet" in err


def test_cli_render_a_stored_invoice_as_xml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """The example finalized in the store of METERSTREAM_HOME gets its number from the store (ACME-2026-000001)."""
    from meterstream.entities import invoices
    from meterstream.entities.db import make_engine, migrate, session_factory
    from meterstream.schemas.settings import Settings

    monkeypatch.setenv("METERSTREAM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("METERSTREAM_DATABASE_URL", raising=False)
    settings = Settings()
    engine = make_engine(settings)
    migrate(settings, engine)
    sf = session_factory(engine)
    doc = msgspec.structs.replace(decode(EXAMPLE.read_bytes()), status="draft", number=None, tenant="t1")
    invoices.upsert_draft(sf, tenant="t1", invoice_id=doc.id, customer=doc.customer, period=doc.period,
                          currency=doc.currency, total=doc.total, amount_due=doc.amount_due,
                          issue_date=doc.issue_date, due_date=doc.due_date, document=encode(doc))  # fmt: skip
    code = main(["invoices", "render", doc.id, "--tenant", "t1", "--format", "xml", "--out", str(tmp_path / "o")])
    _, err = capsys.readouterr()
    assert code == 1 and "number: the invoice has no number yet (status draft)" in err  # a draft: none yet
    invoices.finalize(sf, "t1", doc.id, "ACME", "INV")
    code = main(["invoices", "render", doc.id, "--tenant", "t1", "--format", "xml", "--out", str(tmp_path / "o")])
    out, _ = capsys.readouterr()
    assert (code, out.strip()) == (0, str(tmp_path / "o" / "ACME-2026-000001.xml"))
    root = etree.parse(out.strip()).getroot()
    assert root.findtext("cbc:ID", namespaces=NS) == "ACME-2026-000001"
    assert root.findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=NS) == "459.97"
    engine.dispose()
