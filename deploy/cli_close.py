"""`meterstream close` (a period's invoices from deduplicated usage) and `meterstream query` (SQL on ClickHouse)."""

from __future__ import annotations

import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meterstream.deploy.cli_common import billable_period, call, is_terminal, progress, table

if TYPE_CHECKING:  # kept out of `meterstream --help`
    from meterstream.schemas.settings import Settings


def _close(args: Any, settings: Settings) -> int:
    from meterstream.aggregation.client import open_store
    from meterstream.ingest.producer import make_producer
    from meterstream.ingest.topics import Topics
    from meterstream.invoice_emitter.close import close_period
    from meterstream.invoice_emitter.issue import Issuing
    from meterstream.invoice_emitter.store_plans import StoreView
    from meterstream.rating.catalog import load_catalog

    try:
        billable_period(args.period)  # an operator error (one line, exit 2), before anything is opened
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    catalog = load_catalog(settings.catalog)
    # embedded store: through the sink's ClickHouse HTTP front (as its internal writer) while the sink owns it
    client = open_store(settings, writer=True)
    store = StoreView.open(settings)  # created when missing: the home of the invoice records
    customers = None
    if getattr(args, "customer", None):  # one customer: only its invoice is finalized (docs/billing.md)
        from meterstream.deploy.close_guards import resolve_tenant

        try:
            tenant = resolve_tenant(client, settings.clickhouse_database, store, args.customer, args.tenant)
        except ValueError as exc:
            raise RuntimeError(str(exc)) from None
        customers = {(tenant, args.customer)}
    if not getattr(args, "force", False):  # close guards: the period ended, the pipeline drained, Kafka up, grace
        from meterstream.deploy.close_guards import close_refusal

        refusal = close_refusal(settings, args.period, client, store, customers)
        if refusal:
            print(f"meterstream close: refused: {refusal}", file=sys.stderr)
            return 3
    producer = None if args.no_publish else make_producer(settings)
    with progress(f"close {args.period}") as advance:  # a bar on a terminal; piped: nothing in the log
        result = close_period(
            client,
            settings.clickhouse_database,
            catalog,
            args.period,
            Path(args.out),
            producer,
            Topics.from_settings(settings).invoices,
            store=store,
            issuing=Issuing.from_settings(settings, issue_date=getattr(args, "issue_date", None)),
            render=tuple(f for f in (getattr(args, "render", "") or "").split(",") if f),
            customers=customers,
            progress=advance if is_terminal(sys.stderr) else False,
            workers=getattr(args, "workers", None),
        )
    if customers and not result.invoices and not result.failed:  # the one customer asked for: nothing matched
        raise ValueError(nothing_to_invoice(*next(iter(customers)), args.period, client, settings.clickhouse_database))
    for currency, total in sorted(result.totals_by_currency.items()):
        print(f"{args.period}: {currency} {total}")
    print(f"{len(result.invoices)} invoices written under {Path(args.out) / args.period}")
    if result.unreconciled:
        print(f"warning: {len(result.unreconciled)} lines differ from their streamed amounts", file=sys.stderr)
    for tenant, customer, reason in result.failed:
        print(f"error: {tenant}/{customer} not invoiced: {reason}", file=sys.stderr)
    return 1 if result.failed else 0


def _query(args: Any, settings: Settings) -> int:
    from meterstream.aggregation.client import open_store

    if is_blank(args.sql):  # clickhouse-connect would send ' FORMAT Native' alone, and ClickHouse answer nonsense
        raise ValueError(f"sql: the statement is empty (got {args.sql!r})")
    # embedded store: through the ClickHouse HTTP front of the sink that holds it, when one answers
    client = open_store(settings)
    result = client.query(args.sql)
    headers = list(result.column_names)
    if getattr(args, "as_json", False):  # values as ClickHouse's JSON would quote them: text, exact decimals
        import json

        print(json.dumps([dict(zip(headers, (_cell(v) for v in row), strict=True)) for row in result.result_rows],
                         ensure_ascii=False, indent=2))  # fmt: skip
        return 0
    table(None, headers, [[str(_cell(v)) for v in row] for row in result.result_rows])  # piped: TSV, header first
    return 0


def nothing_to_invoice(tenant: str, customer: str, period: str, client: Any = None, db: str | None = None) -> str:
    """The error of a close of one customer that wrote nothing (`close` and `billing close --customer`). When
    `period` is closed for every customer already (`period_closes`, read through `client`), that is the reason:
    what reaches it now is billed as adjustments on the customer's next close, not on an invoice of its own."""
    if client is not None and db is not None:
        from meterstream.invoice_emitter.ledger import closed_periods

        if period in closed_periods(client, db):
            return (f"customer: nothing to invoice for {tenant}/{customer} in {period}: {period} is closed for every "
                    "customer, so its usage and fees that come now are billed as adjustments on the customer's next "
                    "close; no invoice written")  # fmt: skip
    return (f"customer: nothing to invoice for {tenant}/{customer} in {period} (no usage and nothing else billed to "
            "them in that period); no invoice written")  # fmt: skip


def is_blank(sql: str) -> bool:
    """True when the text holds no statement: only whitespace, `;`, and comments (`-- ...`, `# ...` to the end
    of the line, `/* ... */`), as ClickHouse reads them. Stops at the first other character, so quotes never
    matter."""
    i, n = 0, len(sql)
    while i < n:
        if sql[i].isspace() or sql[i] == ";":
            i += 1
        elif sql.startswith("--", i) or sql[i] == "#":
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                return False  # an unclosed comment: ClickHouse says what is wrong with it
            i = end + 2
        else:
            return False
    return True


def _cell(value: Any) -> Any:
    """A result value as `query` prints it: None, booleans, integers and text as they are; a Decimal in plain
    notation with its column's scale, as ClickHouse writes it (0E-18 is 0.000000000000000000); anything else str."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _issue_date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--issue-date: a date YYYY-MM-DD (got {text!r})") from None


def register(app: typer.Typer) -> None:
    @app.command("close", help="close a period: invoices from deduplicated usage in ClickHouse")
    def close(
        period: Annotated[str, typer.Option(help="YYYY-MM")],
        out: Annotated[str, typer.Option(help="directory for the JSON documents")] = "meterstream-out/invoices",
        no_publish: Annotated[bool, typer.Option("--no-publish", help="do not send documents to the invoices topic")]
        = False,
        customer: Annotated[str | None, typer.Option(help="close only this customer (external id): its invoice "
                                                          "alone is finalized")] = None,
        tenant: Annotated[str | None, typer.Option(help="the customer's tenant (needed when the id exists in "
                                                        "several)")] = None,
        force: Annotated[bool, typer.Option("--force", help="close even if the period has not ended, the pipeline "
                                            "has a backlog or customers are in their grace period (exit 3 when a "
                                            "guard refuses)")] = False,
        issue_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD; default: the day after the period ends "
                                                            "(docs/billing.md)")] = None,
        render: Annotated[str, typer.Option(help="also write html,pdf,png next to each JSON (PDF ~0.3 s each)")] = "",
        workers: Annotated[int | None, typer.Option(min=0, help="forked workers pricing and issuing (0: none; "
                                                    "default: one while a core is spare)")] = None,
    ) -> int:  # fmt: skip
        return call(lambda args, settings: _close(args, settings), {**locals(), "issue_date": _issue_date(issue_date)})

    @app.command("query", help="run SQL on ClickHouse and print a table (TSV when piped; embedded store: through "
                               "the running sink's read-only front)")  # fmt: skip
    def query(
        sql: Annotated[str, typer.Argument(help="the statement")],
        as_json: Annotated[bool, typer.Option("--json", help="a JSON array of rows instead of a table")] = False,
    ) -> int:
        return call(lambda args, settings: _query(args, settings), locals())
