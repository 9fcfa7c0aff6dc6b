"""`meterstream invoices list --period`: a label the close cannot have written (invoice records carry the close's
`YYYY-MM`, invoice_emitter/close.py) is refused in one line naming --period, instead of quietly listing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meterstream.deploy.cli import main


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERSTREAM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("METERSTREAM_DATABASE_URL", raising=False)


@pytest.mark.parametrize("label", ["2026-13", "2026-00", "2026-1", "26-11", "2026-11-01", "2026/11", "2026-11\n", ""])
def test_a_label_that_is_no_period_is_refused(label: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["invoices", "list", "--tenant", "acme", "--period", label])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--period" in err and "YYYY-MM" in err


@pytest.mark.parametrize("label", ["2026-01", "2026-12", "1999-11"])
def test_a_period_label_lists(label: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["invoices", "list", "--tenant", "acme", "--period", label, "--json"])
    out, err = capsys.readouterr()
    assert (code, json.loads(out), err) == (0, [], "")
