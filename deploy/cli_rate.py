"""`meterstream rate quote|event`: price a quantity, or rate one telecom event, from the command line (the work is
rating/cli.py's `quote_command` and rating/telecom/cli.py's `rate_event_command`; they read no settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    rate = typer.Typer(no_args_is_help=True, help="price quantities with the tariff engine")
    app.add_typer(rate, name="rate")

    @rate.command("quote", help="price a period quantity (see docs/pricing.md)")
    def quote(
        price: Annotated[str, typer.Option(help="price file (YAML/JSON) or the price itself, inline")],
        quantity: Annotated[str, typer.Option(help="decimal quantity (for percentage: the event's value)")],
    ) -> int:
        from meterstream.rating.cli import quote_command

        return quote_command(price, quantity)

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
