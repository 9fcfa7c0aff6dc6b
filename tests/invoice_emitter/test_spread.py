"""The staging folder's placement hint (invoice_emitter/spread.py): the flag is set where the file system has it,
refusals change nothing, and each close writes in a new folder with a name of its own."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from meterstream.invoice_emitter.files import DocumentFiles
from meterstream.invoice_emitter.spread import mark_top, spread_folder


def lsattr_flags(path: Path) -> str | None:
    """The folder's attribute letters as `lsattr -d` prints them (None: no lsattr, or the file system has none)."""
    if shutil.which("lsattr") is None:
        return None
    done = subprocess.run(["lsattr", "-d", str(path)], capture_output=True, text=True)
    return done.stdout.split()[0] if done.returncode == 0 and done.stdout else None


def test_mark_top_sets_the_flag_lsattr_reads_as_T(tmp_path: Path) -> None:
    folder = tmp_path / "staging"
    folder.mkdir()
    before = lsattr_flags(folder)
    if before is None:
        pytest.skip("no lsattr, or a file system without inode flags")
    assert "T" not in before
    assert mark_top(folder) is True
    after = lsattr_flags(folder)
    assert after is not None and "T" in after
    assert after.replace("T", "-") == before  # no other flag changed
    assert mark_top(folder) is True  # set already: still True, nothing to do


def test_mark_top_refusals_return_false(tmp_path: Path) -> None:
    assert mark_top(tmp_path / "missing") is False
    a_file = tmp_path / "f.json"
    a_file.write_text("{}")
    assert mark_top(a_file) is False  # not a folder
    shm = Path("/dev/shm")
    if shm.is_dir():
        folder = shm / f"meterstream-spread-{tmp_path.name}"
        folder.mkdir()
        try:
            assert mark_top(folder) is False  # tmpfs has no such flag
        finally:
            folder.rmdir()


def test_spread_folder_is_new_empty_and_named_apart_each_time(tmp_path: Path) -> None:
    one, two = spread_folder(tmp_path), spread_folder(tmp_path)
    assert one.parent == tmp_path and two.parent == tmp_path
    assert one.name != two.name and len(one.name) == 16
    assert list(one.iterdir()) == [] and list(two.iterdir()) == []


def test_published_files_are_where_they_always_were_and_no_staging_is_left(tmp_path: Path) -> None:
    files = DocumentFiles(tmp_path / "2026-10", helper_from=2)  # two in-process, then through the helper
    for customer in ("c1", "c2", "c3", "sub/c4"):
        files.add({"tenant": "t1", "customer": customer, "total": "1.00"})
    paths = files.publish()
    assert paths == [tmp_path / "2026-10" / "t1" / name for name in ("c1.json", "c2.json", "c3.json", "sub/c4.json")]
    for path, customer in zip(paths, ("c1", "c2", "c3", "sub/c4"), strict=True):
        assert path.read_text() == f'{{\n  "tenant": "t1",\n  "customer": "{customer}",\n  "total": "1.00"\n}}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2026-10"]
