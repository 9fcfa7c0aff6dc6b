"""`meterstream rate quote|event`: price a quantity, or rate one telecom event, from the command line (the work is
rating/cli.py's `quote_command` and rating/telecom/cli.py's `rate_event_command`; they read no settings).
`rate quote` prints JSON when piped or with `--json` (what scripts read); on a terminal, its lines as a table."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    rate = typer.Typer(no_args_is_help=True, help="price quantities with the tariff engine")
    app.add_typer(rate, name="rate")

    @rate.command("quote", help="price a period quantity (see docs/pricing.md): a table on a terminal, else JSON")
    def quote(
        price: Annotated[str, typer.Option(help="price file (YAML/JSON) or the price itself, inline")],
        quantity: Annotated[str, typer.Option(help="decimal quantity (for percentage: the event's value)")],
        as_json: Annotated[bool, typer.Option("--json", help="the quote as JSON even on a terminal")] = False,
    ) -> int:
        from meterstream.deploy.cli_common import is_terminal
        from meterstream.rating.cli import quote_command

        check_price_file(price)
        if as_json or not is_terminal():  # JSON, as scripts read it
            return refusal_as_error(lambda: quote_command(price, quantity))
        out = io.StringIO()
        with redirect_stdout(out):
            code = refusal_as_error(lambda: quote_command(price, quantity))
        if code == 0:
            print_quote(json.loads(out.getvalue()))
        return code

    @rate.command("event", help="rate one usage event with a telecom plan and print JSON")
    def event(
        catalog: Annotated[Path, typer.Option(help="telecom section or catalog YAML/JSON")],
        event: Annotated[str, typer.Option(help="usage event as JSON (or @file)")],
        bundle_used: Annotated[str, typer.Option(help='bundle use so far, JSON like {"national_minutes": "600"}')]
        = "{}",
        plan: Annotated[str | None, typer.Option(help="plan id in a full catalog (default: first telecom plan)")]
        = None,
        currency: Annotated[str, typer.Option(help="currency of a bare telecom section (default EUR)")] = "EUR",
    ) -> int:  # fmt: skip
        from meterstream.rating.telecom.cli import rate_event_command

        check_event_options(catalog, event, bundle_used)
        return refusal_as_error(lambda: rate_event_command(catalog, event, bundle_used, plan, currency))


def refusal_as_error(work: Callable[[], int]) -> int:
    """Run a rating command (rating/ knows no CLI: it prints its refusal, `error: ...` or `invalid price: ...`, and
    returns 2) and word its refusal as every command's, `meterstream rate: error: <reason>` on one line (a
    ValueError for the CLI's boundary, deploy/cli_errors.py). Other exits (0; 1: no rate, JSON on stdout) pass."""
    err = io.StringIO()
    with redirect_stderr(err):
        code = work()
    reason = " ".join(err.getvalue().split()).removeprefix("error: ")
    if code == 2 and reason:
        raise ValueError(reason)
    sys.stderr.write(err.getvalue())
    return code


def check_price_file(price: str) -> None:
    """`--price` naming a file that is not there is refused as such: it was read as an inline price, the word
    `prices/gone.yaml` itself, and refused with "a price must be a mapping, got str"."""
    looks_like_a_file = price.lower().endswith((".yaml", ".yml", ".json")) and not any(c in price for c in "{}:\n ")
    if looks_like_a_file and not Path(price).is_file():
        raise ValueError(f"--price: {'not a file' if Path(price).exists() else 'no such file'}: {price}")


def check_event_options(catalog: Path, event: str, bundle_used: str) -> None:
    """`rate event`'s options, each refused naming the option and the reason (ValueError: one line, exit 2), before
    the rating reads them: rating/telecom/cli.py answered `error: [Errno 2] No such file or directory`,
    `error: KeyError('quantity')`, `error: [<class 'decimal.ConversionSyntax'>]`."""
    if not catalog.exists():
        raise ValueError(f"--catalog: no such file: {catalog}")
    if not catalog.is_file():
        raise ValueError(f"--catalog: not a file: {catalog}")
    raw = json_option("--event", event)
    if not isinstance(raw, dict):
        raise ValueError(f"--event: must be a JSON object, got {type(raw).__name__}")
    missing = [f for f in ("meter", "quantity", "time") if f not in raw]
    if missing:
        raise ValueError(f"--event: missing {', '.join(missing)} (an event has meter, quantity and time)")
    decimal_option("--event: quantity", raw["quantity"])
    try:
        from datetime import datetime

        datetime.fromisoformat(str(raw["time"]).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--event: time must be an ISO 8601 time like 2026-12-01T10:00:00Z, got {raw['time']!r}"
        ) from None
    used = json_option("--bundle-used", bundle_used)
    if not isinstance(used, dict):
        raise ValueError(f'--bundle-used: must be a JSON object like {{"national_minutes": "600"}}, got {used!r}')
    for bundle, value in used.items():
        decimal_option(f"--bundle-used: {bundle}", value)


def json_option(option: str, text: str) -> Any:
    """An option's JSON, inline or `@path`."""
    source = text
    if text.startswith("@"):
        try:
            source = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{option}: cannot read {text[1:]}: {exc.strerror or exc}") from None
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{option}: not JSON ({exc})") from None


def decimal_option(what: str, value: Any) -> None:
    try:
        ok = Decimal(str(value)).is_finite()
    except InvalidOperation:
        ok = False
    if not ok or isinstance(value, bool):
        raise ValueError(f"{what} must be a decimal number, got {value!r}")


def print_quote(q: dict[str, Any]) -> None:
    """A quote (rating.cli's JSON) as a table of its lines, the totals in the title."""
    from meterstream.deploy.cli_common import table

    title = (f"{q['quantity']} -> {q['total']} {q['currency']} (precise {q['precise_total']}; "
             f"priced quantity {q['priced_quantity']})")  # fmt: skip
    headers = ["tier", "description", "quantity", "unit_amount", "amount"]
    rows = [[str(ln["tier"] or "-"), ln["description"], ln["quantity"], ln["unit_amount"] or "-", ln["amount"]]
            for ln in q["lines"]]  # fmt: skip
    table(title, headers, rows)
