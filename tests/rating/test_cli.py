"""`meterstream rate quote`: the CLI (deploy/cli.py's typer app, in this process) onto rating.cli.quote_command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meterstream.deploy.cli import main

GRADUATED_YAML = """\
model: graduated
currency: USD
tiers:
  - {up_to: "5", unit_amount: "7.00"}
  - {up_to: "10", unit_amount: "6.50"}
  - {up_to: null, unit_amount: "6.00"}
"""


def _quote(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(["rate", "quote", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else {}), err


def test_quote_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "price.yaml"
    path.write_text(GRADUATED_YAML)
    code, out, err = _quote(capsys, "--price", str(path), "--quantity", "6")
    assert (code, err) == (0, "")
    # 5 x 7.00 + 1 x 6.50
    assert (out["currency"], out["total"], out["precise_total"]) == ("USD", "41.50", "41.50")
    assert [(line["tier"], line["quantity"], line["amount"]) for line in out["lines"]] == [
        (1, "5", "35.00"),
        (2, "1", "6.50"),
    ]


def test_quote_inline_json_numbers_are_read_as_decimals(capsys: pytest.CaptureFixture[str]) -> None:
    price = '{"model": "unit", "currency": "USD", "unit_amount": 0.1}'  # 0.1 read from text, not as a float
    code, out, _ = _quote(capsys, "--price", price, "--quantity", "3")
    assert code == 0
    assert (out["total"], out["precise_total"]) == ("0.30", "0.3")


def test_quote_inline_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    price = '{model: unit, currency: JPY, unit_amount: "0.5"}'
    code, out, _ = _quote(capsys, "--price", price, "--quantity", "3")
    assert (code, out["total"], out["precise_total"]) == (0, "2", "1.5")  # 1.5 -> 2, half away from zero


def test_invalid_price_names_the_field_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    tiers = '[{up_to: "10", unit_amount: "1"}, {up_to: "5", unit_amount: "1"}, {up_to: null, unit_amount: "1"}]'
    price = f"{{model: volume, currency: USD, tiers: {tiers}}}"
    code, out, err = _quote(capsys, "--price", price, "--quantity", "1")
    assert (code, out) == (2, {})
    assert "tiers[1].up_to: bounds must increase (5 after 10)" in err


def test_bad_quantity_and_unreadable_price_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    price = '{model: unit, currency: USD, unit_amount: "1"}'
    assert _quote(capsys, "--price", price, "--quantity", "x")[0] == 2
    assert _quote(capsys, "--price", "{unclosed: [", "--quantity", "1")[0] == 2


def test_the_rate_group_has_quote_and_event_and_nothing_registers_argparse() -> None:
    from meterstream.deploy.cli import build_app, commands
    from meterstream.rating import cli
    from meterstream.rating.telecom import cli as telecom_cli

    assert sorted(path for path, _ in commands(build_app("rate"))) == [("rate", "event"), ("rate", "quote")]
    for module in (cli, telecom_cli):  # the typer app is the one command line
        assert not hasattr(module, "argparse") and not hasattr(module, "run"), module.__name__
