"""What every `meterstream` command group shares: the settings, tables, JSON output and progress bars.

Output rules (issue #17): a table on a terminal is a rich table that fits its width; piped, the command prints
plain lines (each command's own, what scripts parse) and never a colour or escape code; `--json` prints JSON
wherever a table is printed. Progress bars go to stderr, and only when stderr is a terminal.

Imports stay light (the standard library and typer): `meterstream --help` must not load the pipeline.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meterstream.schemas.settings import Settings

Handler = Callable[[Any, "Settings"], int]

_override: list[Settings | None] = [None]


@contextmanager
def settings_override(settings: Settings | None) -> Iterator[None]:
    """Commands run with these settings instead of the environment's (tests; `main(argv, settings=...)`)."""
    saved = _override[0]
    _override[0] = settings
    try:
        yield
    finally:
        _override[0] = saved


def settings() -> Settings:
    """The process's settings (from `METERSTREAM_*`); a value that does not parse is a user error (exit 2)."""
    if _override[0] is not None:
        return _override[0]
    from meterstream.schemas.settings import Settings

    return Settings()


def call(handler: Handler, params: dict[str, Any], **extra: Any) -> int:
    """Run a handler `fn(args, settings) -> int` with the command's parameters as `args` attributes."""
    args = SimpleNamespace(**{k: v for k, v in params.items() if k != "self"}, **extra)
    return int(handler(args, settings()) or 0)


def one_of(*allowed: str) -> Callable[[Any], Any]:
    """A typer callback for a repeatable option whose values have choices (typer's lists take no Literal)."""

    def check(value: Any) -> Any:
        for v in value or []:
            if v not in allowed:
                import typer

                raise typer.BadParameter(f"{v!r} is not one of {', '.join(allowed)}")
        return value

    return check


# the years a period can be: those a usage event's time may carry (schemas/event.py: ClickHouse DateTime64 holds
# 1900-01-01 to 2299-12-31); a month outside holds no usage, and its bounds may not be dates at all (0000-01, 9999-12)
PERIOD_YEARS = (1900, 2299)


def billable_period(text: str, field: str = "period") -> str:
    """`text` if it is a month that can be billed, YYYY-MM with a month 01-12 of a year in PERIOD_YEARS; else a
    ValueError naming `field` and saying what a valid period is (0000-01 answered "year 0 is out of range")."""
    import re

    m = re.fullmatch(r"(\d{4})-(\d{2})", text)
    if m is None or not 1 <= int(m[2]) <= 12 or not PERIOD_YEARS[0] <= int(m[1]) <= PERIOD_YEARS[1]:
        first, last = PERIOD_YEARS
        raise ValueError(f"{field}: must be YYYY-MM, got {text!r}: a month 01-12 of a year {first}-{last} (the "
                         "years usage events may carry), e.g. 2026-11")  # fmt: skip
    return text


def is_terminal(stream: Any = None) -> bool:
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def rich_table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table that fits the terminal: columns wrap (fold) instead of running off the right edge."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, expand=False)
    for h in headers:
        table.add_column(h, overflow="fold")
    for row in rows:
        table.add_row(*(str(c) for c in row))
    Console(file=sys.stdout, highlight=False).print(table)


def aligned(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Plain aligned columns (two spaces apart), header first: what scripts of these commands read."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for line in (headers, *rows):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def tab_separated(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    for line in (headers, *rows):
        print("\t".join(str(c) for c in line))


def table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[str]], *, as_json: bool = False,
          plain: Callable[[Sequence[str], Sequence[Sequence[str]]], None] = tab_separated) -> None:  # fmt: skip
    """`--json`: one JSON array of objects (the headers as keys); a terminal: a rich table; piped: `plain`."""
    if as_json:
        print(json.dumps([dict(zip(headers, row, strict=True)) for row in rows], ensure_ascii=False, indent=2))
    elif is_terminal():
        rich_table(title, headers, rows)
    else:
        plain(headers, rows)


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr when it is a terminal; yields `advance(done, total)`. Piped: does nothing."""
    if not is_terminal(sys.stderr):
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(file=sys.stderr), transient=True)  # fmt: skip
    with bar:
        task = bar.add_task(description, total=total)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance
