"""`meterstream rate quote|event`: price a quantity, or rate one telecom event, from the command line (the work is
rating/cli.py's `quote_command` and rating/telecom/cli.py's `rate_event_command`; they read no settings).
`rate quote` prints JSON when piped or with `--json` (what scripts read); on a terminal, its lines as a table."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
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

        if as_json or not is_terminal():  # JSON, as scripts read it
            return quote_command(price, quantity)
        out = io.StringIO()
        with redirect_stdout(out):
            code = quote_command(price, quantity)
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

        return rate_event_command(catalog, event, bundle_used, plan, currency)


def print_quote(q: dict[str, Any]) -> None:
    """A quote (rating.cli's JSON) as a table of its lines, the totals in the title."""
    from meterstream.deploy.cli_common import table

    title = (f"{q['quantity']} -> {q['total']} {q['currency']} (precise {q['precise_total']}; "
             f"priced quantity {q['priced_quantity']})")  # fmt: skip
    headers = ["tier", "description", "quantity", "unit_amount", "amount"]
    rows = [[str(ln["tier"] or "-"), ln["description"], ln["quantity"], ln["unit_amount"] or "-", ln["amount"]]
            for ln in q["lines"]]  # fmt: skip
    table(title, headers, rows)
