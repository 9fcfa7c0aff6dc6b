"""Invoice files: one JSON document per invoice at <period>/<tenant>/<customer>.json, published atomically."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from meterstream.invoice_emitter.document import empty_invoice
from meterstream.invoice_emitter.files import DocumentFiles, file_name, write_documents


def doc(tenant: str, customer: str, total: str = "0") -> dict:
    return {**empty_invoice(tenant, customer, "2026-10", "basic", "USD"), "total": total}


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def expected(docs: list[dict]) -> dict[str, bytes]:
    return {f"2026-10/{d['tenant']}/{d['customer']}.json": orjson.dumps(d, option=orjson.OPT_INDENT_2) + b"\n"
            for d in docs}  # fmt: skip


DOCS = [doc("t1", "c1"), doc("t2", "x"), doc("t1", "c2"), doc("t1", "a/b")]


@pytest.mark.parametrize("helper_from", [1, 2, 10_000])  # the helper process from the start, after one, never
def test_one_file_per_invoice_and_nothing_else(tmp_path: Path, helper_from: int) -> None:
    out = DocumentFiles(tmp_path / "2026-10", helper_from=helper_from)
    for d in DOCS:
        out.add(d)
    if helper_from > len(DOCS):
        assert files(tmp_path) == {}  # in-process: written at publish
    assert not (tmp_path / "2026-10").exists()  # nothing visible before publish
    assert out.publish() == [tmp_path / "2026-10" / d["tenant"] / f"{d['customer']}.json" for d in DOCS]
    assert files(tmp_path) == expected(DOCS)  # and no staging folder left


def test_an_existing_folder_has_its_files_replaced_and_keeps_the_others(tmp_path: Path) -> None:
    folder = tmp_path / "2026-10"
    write_documents(folder, [doc("t1", "c1", "1.00"), doc("t1", "old")])
    write_documents(folder, [doc("t1", "c1", "2.00"), doc("t1", "c2"), doc("t3", "y")])
    assert orjson.loads((folder / "t1" / "c1.json").read_bytes())["total"] == "2.00"
    assert sorted(files(tmp_path)) == ["2026-10/t1/c1.json", "2026-10/t1/c2.json", "2026-10/t1/old.json",
                                       "2026-10/t3/y.json"]  # fmt: skip


def test_a_staging_folder_left_by_an_interrupted_close_is_discarded(tmp_path: Path) -> None:
    (tmp_path / ".partial-2026-10" / "t1").mkdir(parents=True)
    (tmp_path / ".partial-2026-10" / "t1" / "stale.json").write_text("{}")
    write_documents(tmp_path / "2026-10", [doc("t1", "c1")])
    assert sorted(files(tmp_path)) == ["2026-10/t1/c1.json"]


def test_no_documents_no_folder(tmp_path: Path) -> None:
    assert write_documents(tmp_path / "out" / "2026-10", []) == []
    assert not (tmp_path / "out").exists()


def test_a_failing_helper_fails_the_publish_and_abort_leaves_nothing(tmp_path: Path) -> None:
    out = DocumentFiles(tmp_path / "2026-10", helper_from=1)
    out.add(doc("t1", "x"))
    out.add(doc("t1", "x.json/y"))  # its folder would be the file just written: the helper fails
    with pytest.raises(OSError, match="writing invoice files"):
        out.publish()
    out.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("tenant", "customer"), [("t1", ".."), ("t1", "../x"), ("t1", "/abs"), ("t1", "a//b"), ("..", "c"), ("t1", "a\0")]
)
def test_names_that_would_leave_the_folder_are_refused(tenant: str, customer: str) -> None:
    with pytest.raises(ValueError, match="cannot name a file"):
        file_name(tenant, customer)


def test_a_customer_with_a_slash_gets_a_subfolder() -> None:
    assert file_name("t1", "acme/eu") == "t1/acme/eu.json"


def test_a_progress_callback_is_told_every_hundred_documents_and_at_the_end(tmp_path: Path, capsys) -> None:
    seen: list[tuple[int, int | None]] = []
    out = DocumentFiles(tmp_path / "2026-10", progress=lambda done, total: seen.append((done, total)))
    for i in range(250):
        out.add(doc("t1", f"c{i}"))
    out.publish()
    assert seen == [(100, None), (200, None), (250, 250)]  # 250 documents: two steps of 100, then done
    assert capsys.readouterr().err == ""  # the bar draws; the file writer prints nothing of its own


def test_a_document_given_as_its_json_makes_the_same_file() -> None:
    """`encoded_document_bytes` re-indents a document's compact JSON as it is: byte for byte the file of its dict
    (`document_bytes`), escapes, non-ASCII text, empty lists and nested objects included."""
    from meterstream.invoice_emitter.files import document_bytes, encoded_document_bytes
    from meterstream.schemas.invoice import encode, from_v1

    doc = empty_invoice("t1", "c1", "2026-10", "basic", "USD")
    text = 'a "q"\t×\n\\ ü \u2028 \x1f'
    doc["lines"] = [{"line_no": 1, "meter": "api", "description": text, "quantity": "1.5", "amount": "0.10"}]
    v2 = encode(from_v1(doc))
    assert encoded_document_bytes(v2) == document_bytes(orjson.loads(v2))
    assert encoded_document_bytes(v2).startswith(b'{\n  "schema_version": 2,\n  "id": "INV-')
    assert b'"tiers": [],\n' in encoded_document_bytes(v2) and encoded_document_bytes(v2).endswith(b"}\n")
