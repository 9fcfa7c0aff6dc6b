"""`close --period` and `billing close --period` with a period that cannot be billed say what a valid period is
(session 17, the audit's item 2): 0000-01 and 9999-12 matched YYYY-MM and failed inside the close with "year 0 is
out of range" / "year 10000 is out of range"; 2026-13 said only "must be YYYY-MM". A period is a month 01-12 of
a year 1900-2299, the years a usage event's time may carry (schemas/event.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_errors import assert_one_line_error, environment, run_many

from meterstream.deploy.cli_common import billable_period
from meterstream.schemas.settings import Settings

IMPOSSIBLE = ["0000-01", "0001-01", "1899-12", "2300-01", "9999-12", "2026-13", "2026-00", "2026-1", "26-11", ""]
VALID = "a month 01-12 of a year 1900-2299 (the years usage events may carry), e.g. 2026-11"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from meterstream.entities.db import migrate

    home = tmp_path_factory.mktemp("cli-errors-period")
    migrate(Settings(home=home, database_url=f"sqlite:///{home / 'entities.db'}"))
    return home


def test_billable_periods_are_the_months_of_1900_to_2299() -> None:
    for period in ["1900-01", "2026-11", "2299-12"]:
        assert billable_period(period) == period
    for period in IMPOSSIBLE:
        with pytest.raises(ValueError) as refused:
            billable_period(period)
        assert str(refused.value) == f"period: must be YYYY-MM, got {period!r}: {VALID}"


def test_close_and_billing_close_say_what_a_valid_period_is(home: Path) -> None:
    jobs = [(["close", "--period", p, "--force"], {}) for p in IMPOSSIBLE]
    jobs += [(["billing", "close", "--period", p, "--force"], {}) for p in IMPOSSIBLE]
    for (argv, _), done in zip(jobs, run_many(jobs, environment(home)), strict=True):
        period = argv[argv.index("--period") + 1]
        command = "close" if argv[0] == "close" else "billing close"
        assert_one_line_error(done, f"period: must be YYYY-MM, got {period!r}: {VALID}", " ".join(argv))
        assert done.stderr.startswith(f"meterstream {command}: error: "), (argv, done.stderr)
        assert "out of range" not in done.stderr
        assert done.returncode == 2, (argv, done.returncode, done.stderr)
        if command == "billing close":  # its answer is JSON, as for any period it refuses
            answer = json.loads(done.stdout)
            assert (answer["error"], answer["field"]) == ("invalid", "period")
            assert answer["message"] == f"period: must be YYYY-MM, got {period!r}: {VALID}"


def test_revenue_and_export_of_the_last_month_say_what_a_valid_month_is(home: Path) -> None:
    """`revenue|export --month 9999-12`: YYYY-MM, but its end (the next month's first day) is no date; they answered
    "year 10000 is out of range". 9999-11 is the last month they can read."""
    out = str(home / "export")
    jobs = [(["revenue", "--tenant", "acme", "--month", "9999-12"], {}),
            (["export", "--tenant", "acme", "--month", "9999-12", "--format", "csv", "--out", out], {}),
            (["export", "--tenant", "acme", "--month", "9999-11", "--format", "csv", "--out", out], {})]  # fmt: skip
    revenue, export, last = run_many(jobs, environment(home))
    for argv, done in zip([j[0] for j in jobs[:2]], (revenue, export), strict=True):
        assert_one_line_error(done, "--month: must be a month from 0001-01 to 9999-11, e.g. 2026-11 (got '9999-12'",
                              " ".join(argv))  # fmt: skip
        assert done.stderr.startswith(f"meterstream {argv[0]}: error: ") and "out of range" not in done.stderr
        assert done.returncode == 1  # the finance commands' refusal (docs/cli.md)
    assert (last.returncode, last.stderr) == (0, "")
    assert "0 invoices, 0 credit notes, 0 payments of acme in 9999-11" in last.stdout
