"""Invoice files: one JSON document per invoice at <period>/<tenant>/<customer>.json, written atomically."""

from __future__ import annotations

from pathlib import Path

import orjson

from invoice_emitter.close import write_documents
from invoice_emitter.document import empty_invoice


def doc(tenant: str, customer: str, total: str = "0") -> dict:
    return {**empty_invoice(tenant, customer, "2026-10", "basic", "USD"), "total": total}


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_one_file_per_invoice_in_a_fresh_folder(tmp_path: Path) -> None:
    docs = [doc("t1", "c1"), doc("t2", "x"), doc("t1", "c2"), doc("t1", "a/b")]
    paths = write_documents(tmp_path / "2026-10", docs)
    assert paths == [tmp_path / "2026-10" / d["tenant"] / f"{d['customer']}.json" for d in docs]
    assert files(tmp_path / "2026-10") == {
        f"{d['tenant']}/{d['customer']}.json": orjson.dumps(d, option=orjson.OPT_INDENT_2) + b"\n" for d in docs
    }
    assert sorted(p.name for p in (tmp_path / "2026-10").iterdir()) == ["t1", "t2"]  # no staging folder left


def test_an_existing_folder_has_its_files_replaced_and_keeps_the_others(tmp_path: Path) -> None:
    folder = tmp_path / "2026-10"
    write_documents(folder, [doc("t1", "c1", "1.00"), doc("t1", "old")])
    write_documents(folder, [doc("t1", "c1", "2.00"), doc("t1", "c2")])
    assert orjson.loads((folder / "t1" / "c1.json").read_bytes())["total"] == "2.00"
    assert sorted(files(folder)) == ["t1/c1.json", "t1/c2.json", "t1/old.json"]


def test_a_staging_folder_left_by_an_interrupted_close_is_discarded(tmp_path: Path) -> None:
    folder = tmp_path / "2026-10"
    (folder / ".partial-t1").mkdir(parents=True)
    (folder / ".partial-t1" / "stale.json").write_text("{}")
    write_documents(folder, [doc("t1", "c1")])
    assert sorted(files(folder)) == ["t1/c1.json"]


def test_no_documents_no_folder(tmp_path: Path) -> None:
    assert write_documents(tmp_path / "2026-10", []) == []
    assert not (tmp_path / "2026-10").exists()
