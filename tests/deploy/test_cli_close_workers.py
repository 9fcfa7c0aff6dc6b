"""`meterstream close --workers N` reaches close_period(workers=N); without it the close's own default (None)."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from meterstream.deploy.cli import main


@pytest.mark.parametrize(("extra", "expected"), [([], None), (["--workers", "0"], 0), (["--workers", "2"], 2)])
def test_close_passes_workers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: list[str],
                              expected: int | None) -> None:  # fmt: skip
    from meterstream.schemas.settings import Settings

    seen: list[object] = []

    def close_period(*args: object, **kwargs: object) -> SimpleNamespace:
        seen.append(kwargs["workers"])
        return SimpleNamespace(totals_by_currency={}, invoices=[], unreconciled=[], failed=[])

    monkeypatch.setattr("meterstream.invoice_emitter.close.close_period", close_period)
    monkeypatch.setattr("meterstream.aggregation.client.connect", lambda settings: object())
    monkeypatch.setattr("meterstream.aggregation.http_front.front_client", lambda settings, writer=False: None)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    catalog = Path(__file__).resolve().parents[1] / "data" / "catalog.yaml"
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'e.db'}", catalog=catalog)
    argv = ["close", "--period", "2026-10", "--no-publish", "--force", "--out", str(tmp_path / "out"), *extra]
    assert main(argv, settings=settings) == 0
    assert seen == [expected]


def test_close_refuses_negative_workers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from meterstream.schemas.settings import Settings

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'e.db'}")
    with pytest.raises(SystemExit) as exit_:
        main(["close", "--period", "2026-10", "--workers", "-1"], settings=settings)
    assert exit_.value.code == 2
    assert "--workers" in err.getvalue()
