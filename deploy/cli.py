"""`meterstream`: one CLI for the broker, the pipeline processes, period close, rating and the demo."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date
from pathlib import Path

from meterstream.schemas.settings import Settings


def _kafka(args: argparse.Namespace, settings: Settings) -> int:
    from meterstream.deploy import kafka_local

    if args.brokers is not None:  # a local cluster of N KRaft nodes (deploy/kafka_cluster.py)
        settings = settings.model_copy(update={"kafka_brokers": args.brokers})
    if args.action == "install":
        print(kafka_local.ensure_jars(settings))
        return 0
    if args.action == "start":
        st = kafka_local.start(settings, node=args.node)
    elif args.action == "stop":
        stopped = kafka_local.stop(settings, kill=args.kill, node=args.node)
        print("stopped" if stopped else "no local broker was running")
        return 0
    else:
        st = kafka_local.status(settings)
    for n in st.nodes:
        print(f"node={n.node} bootstrap={n.bootstrap} pid={n.pid} answering={n.answering}")
    print(f"bootstrap={st.bootstrap} managed={st.managed} pid={st.pid} answering={st.answering}")
    return 0 if st.answering else 1


def _init(args: argparse.Namespace, settings: Settings) -> int:
    from meterstream.aggregation.client import connect
    from meterstream.aggregation.ddl import create_schema
    from meterstream.deploy import kafka_local
    from meterstream.ingest.topics import ensure_topics

    kafka_local.start(settings)
    created = ensure_topics(settings)
    print(f"topics: created {created or 'none (all present)'}")
    from meterstream.entities.db import database_url, migrate

    migrate(settings)
    print(f"database: migrated {database_url(settings).split('@')[-1]}")
    n = create_schema(connect(settings), settings.clickhouse_database, settings.clickhouse_cluster)
    print(
        f"clickhouse: {n} statements applied to {settings.clickhouse_database} at {settings.clickhouse_dsn}"
    )
    return 0


def _process(args: argparse.Namespace, settings: Settings) -> int:
    if settings.processor_engine == "faust":
        from meterstream.processor.faust_engine import run_worker

        run_worker(settings)
    else:
        from meterstream.processor.runner import run_native

        run_native(settings, args.worker, args.workers)
    return 0


def _sink(args: argparse.Namespace, settings: Settings) -> int:
    from meterstream.aggregation.sink_main import run_sink

    return run_sink(settings)


def _close(args: argparse.Namespace, settings: Settings) -> int:
    from meterstream.aggregation.client import connect
    from meterstream.aggregation.http_front import front_client
    from meterstream.deploy.close_guards import check_period
    from meterstream.ingest.producer import make_producer
    from meterstream.ingest.topics import Topics
    from meterstream.invoice_emitter.close import close_period
    from meterstream.invoice_emitter.issue import Issuing
    from meterstream.invoice_emitter.store_plans import StoreView
    from meterstream.rating.catalog import load_catalog

    try:
        check_period(args.period)  # an operator error, before anything is opened
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    catalog = load_catalog(settings.catalog)
    # embedded store: through the sink's ClickHouse HTTP front (as its internal writer) while the sink owns it
    client = front_client(settings, writer=True) or connect(settings)
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
    )
    for currency, total in sorted(result.totals_by_currency.items()):
        print(f"{args.period}: {currency} {total}")
    print(f"{len(result.invoices)} invoices written under {Path(args.out) / args.period}")
    if result.unreconciled:
        print(
            f"warning: {len(result.unreconciled)} lines differ from their streamed amounts", file=sys.stderr
        )
    for tenant, customer, reason in result.failed:
        print(f"error: {tenant}/{customer} not invoiced: {reason}", file=sys.stderr)
    return 1 if result.failed else 0


def _query(args: argparse.Namespace, settings: Settings) -> int:
    from meterstream.aggregation.client import connect
    from meterstream.aggregation.http_front import front_client

    # embedded store: through the ClickHouse HTTP front of the sink that holds it, when one answers
    client = front_client(settings)
    if client is None:
        try:
            client = connect(settings)
        except Exception as exc:
            if not settings.clickhouse_dsn.startswith("chdb://"):
                raise
            raise RuntimeError(
                f"cannot open the embedded store {settings.clickhouse_dsn} ({str(exc)[:200]}); the process holding "
                "it (a running sink) answers queries on METERSTREAM_CLICKHOUSE_HTTP_PORT, which does not answer "
                f"here ({settings.clickhouse_http_port or 'off'})"
            ) from None
    result = client.query(args.sql)
    print("\t".join(result.column_names))
    for row in result.result_rows:
        print("\t".join(str(v) for v in row))
    return 0


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from meterstream.deploy.up import run_up

    return run_up(settings, api_port=args.port)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from meterstream.deploy.demo import run_demo

    return run_demo(settings, events=args.events, out=Path(args.out), period=args.period)


def _chaos(args: argparse.Namespace, settings: Settings) -> int:
    from meterstream.deploy.chaos import ChaosPlan, run_chaos

    plan = ChaosPlan(events=args.events, seconds=args.seconds, processor_kills=args.kills, sink_kills=args.kills,
                     clickhouse_outage_s=args.outage, seed=args.seed)  # fmt: skip
    return run_chaos(settings, plan, Path(args.out))


def _entity_sessions(settings: Settings):  # type: ignore[no-untyped-def]
    from meterstream.entities.db import make_engine, migrate, session_factory

    engine = make_engine(settings)
    migrate(settings, engine)
    return session_factory(engine)


def _catalog(args: argparse.Namespace, settings: Settings) -> int:
    from meterstream.entities.catalog_apply import apply_file

    result = apply_file(_entity_sessions(settings), args.file, tenants=args.tenant)
    for change in result.changes:
        if change.outcome != "unchanged" or args.verbose:
            print(change)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(result.summary())
    return 0


def _print_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    """A rich table when rich is installed, else tab-separated lines."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print("\t".join(headers))
        for row in rows:
            print("\t".join(row))
        return
    table = Table(title=title)
    for h in headers:
        table.add_column(h)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _when(value) -> str:  # type: ignore[no-untyped-def]
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else ""


def _list_entities(args: argparse.Namespace, settings: Settings) -> int:
    sf = _entity_sessions(settings)
    if args.command == "customers":
        from meterstream.entities.customers import list_customer_docs

        docs = list_customer_docs(sf, args.tenant, args.limit, args.offset)
        rows = [[d.external_id, d.name, d.currency or "", d.country or "", d.timezone, d.email or "", str(d.version)]
                for d in docs]  # fmt: skip
        _print_table(f"customers of {args.tenant}", ["external_id", "name", "currency", "country", "timezone", "email",
                                                     "version"], rows)  # fmt: skip
    elif args.command == "plans":
        from meterstream.entities.plans import list_plans

        rows = []
        for p in list_plans(sf, args.tenant):
            charges = [*(f"usage:{m}" for m in p.usage), *(f"fixed:{f.code} {f.amount}/{f.interval}" for f in p.fixed),
                       *(f"one_time:{c.code}" for c in p.one_time), *(f"installments:{c.code}" for c in p.installments)]
            if p.telecom is not None:
                charges.append("telecom")
            rows.append([p.code, str(p.version), p.name, p.currency, p.interval, ", ".join(charges),
                         _when(p.published_at)])  # fmt: skip
        _print_table(f"plans of {args.tenant} (newest versions)", ["code", "version", "name", "currency", "interval",
                                                                   "charges", "published_at"], rows)  # fmt: skip
    else:
        from meterstream.entities.subscriptions import list_subscriptions

        rows = []
        for sub in list_subscriptions(sf, args.tenant, args.customer):
            phases = "; ".join(f"{ph.plan_code}@{ph.plan_version} [{_when(ph.start)}, {_when(ph.end) or '...'})"
                               for ph in sub.phases)  # fmt: skip
            rows.append([sub.external_id, sub.customer, sub.status, sub.billing_anchor, phases, str(sub.version)])
        _print_table(f"subscriptions of {args.tenant}", ["external_id", "customer", "status", "anchor", "phases",
                                                         "version"], rows)  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meterstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("kafka", help="run a local Kafka (KRaft: one node, or --brokers N) from Maven Central jars")
    p.add_argument("action", choices=["install", "start", "stop", "status"])
    p.add_argument("--brokers", type=int, choices=range(1, 10), metavar="N",
                   help="nodes of a local KRaft cluster (default METERSTREAM_KAFKA_BROKERS, 1)")  # fmt: skip
    p.add_argument("--node", type=int, help="start or stop only this node of a local cluster (1..N)")
    p.add_argument("--kill", action="store_true", help="stop with SIGKILL instead of a controlled shutdown")
    p.set_defaults(func=_kafka)

    p = sub.add_parser("init", help="create topics and ClickHouse tables (safe to run again)")
    p.set_defaults(func=_init)

    p = sub.add_parser("process", help="run the stream processor (dedup + rate) until stopped")
    p.add_argument("--worker", type=int, default=0, help="this worker's index (native engine)")
    p.add_argument("--workers", type=int, default=1, help="workers sharing the partitions (contiguous ranges)")
    p.set_defaults(func=_process)

    p = sub.add_parser("sink", help="run the ClickHouse sink until stopped")
    p.set_defaults(func=_sink)

    p = sub.add_parser("close", help="close a period: invoices from deduplicated usage in ClickHouse")
    p.add_argument("--period", required=True, help="YYYY-MM")
    p.add_argument("--out", default="meterstream-out/invoices", help="directory for the JSON documents")
    p.add_argument("--no-publish", action="store_true", help="do not send documents to the invoices topic")
    p.add_argument("--customer", default=None, help="close only this customer (external id): its invoice alone "
                   "is finalized")  # fmt: skip
    p.add_argument("--tenant", default=None, help="the customer's tenant (needed when the id exists in several)")
    p.add_argument("--force", action="store_true", help="close even if the period has not ended, the pipeline "
                   "has a backlog or customers are in their grace period (exit 3 when a guard refuses)")  # fmt: skip
    p.add_argument("--issue-date", type=date.fromisoformat, default=None,
                   help="YYYY-MM-DD; default: the day after the period ends (docs/billing.md)")  # fmt: skip
    p.add_argument("--render", default="", help="also write html,pdf,png next to each JSON (PDF ~0.3 s each)")
    p.set_defaults(func=_close)

    p = sub.add_parser("chaos", help="fault-injection run: kills, broker restart, ClickHouse outage, then a verdict")
    p.add_argument("--events", type=int, default=500_000)
    p.add_argument("--seconds", type=float, default=None, help="spread production over this long")
    p.add_argument("--kills", type=int, default=3, help="SIGKILLs of the processor and of the sink, each")
    p.add_argument("--outage", type=float, default=22.0, help="seconds ClickHouse is unavailable")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--out", default="meterstream-chaos")
    p.set_defaults(func=_chaos)

    p = sub.add_parser(
        "query",
        help="run SQL on ClickHouse and print TSV (embedded store: through the running sink's read-only front)",
    )
    p.add_argument("sql")
    p.set_defaults(func=_query)

    from meterstream.deploy.cli_clickhouse import add_clickhouse_command
    from meterstream.deploy.cli_revenue import add_revenue_command

    add_clickhouse_command(sub)
    add_revenue_command(sub)

    p = sub.add_parser("up", help="broker, processor, sink and API in the foreground; Ctrl-C stops them all")
    p.add_argument("--port", type=int, default=None, help="API port (default: METERSTREAM_API_PORT, 8080)")
    p.set_defaults(func=_up)

    p = sub.add_parser("demo", help="the whole pipeline on a generated workload, end to end")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--out", default="meterstream-out")
    p.add_argument("--period", default=None, help="YYYY-MM (default: last month)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("catalog", help="apply a catalog file (plans, customers, subscriptions) to the entity store")
    cs = p.add_subparsers(dest="catalog_action", required=True)
    c = cs.add_parser("apply", help="idempotent, like kubectl apply: a second run changes nothing (docs/catalog.md)")
    c.add_argument("file", help="YAML or JSON: today's catalog (plans + assignments) or the extended format")
    c.add_argument("--tenant", action="append", default=[], help="only this tenant (repeatable); with one, "
                   "also the tenant of entities that name none")  # fmt: skip
    c.add_argument("-v", "--verbose", action="store_true", help="also list what is unchanged")
    c.set_defaults(func=_catalog)

    listed = (("customers", "customers"), ("plans", "plans (newest versions)"), ("subscriptions", "subscriptions"))
    for name, what in listed:
        p = sub.add_parser(name, help=f"{what} of a tenant in the entity store")
        ls = p.add_subparsers(dest=f"{name}_action", required=True)
        c = ls.add_parser("list", help=f"list {what}")
        c.add_argument("--tenant", required=True)
        if name == "customers":
            c.add_argument("--limit", type=int, default=1000)
            c.add_argument("--offset", type=int, default=0)
        if name == "subscriptions":
            c.add_argument("--customer", default=None, help="only this customer's")
        c.set_defaults(func=_list_entities)

    from meterstream.deploy.billing_run import add_commands as add_billing_commands

    add_billing_commands(sub)

    from meterstream.ingest.dlq_cli import add_commands as add_dlq_commands

    add_dlq_commands(sub)

    from meterstream.deploy.cli_webhooks import register as add_webhooks_commands

    add_webhooks_commands(sub)  # webhooks add|list|disable|enable|deliveries|replay|events

    from meterstream.deploy.cli_invoices import register as add_finance_commands

    add_finance_commands(sub)  # invoices, payments, credit-notes, export

    from meterstream.api.cli import add_commands as add_api_commands

    add_api_commands(sub)

    try:
        from meterstream.rating.cli import add_commands

        rate_sub = add_commands(sub)
        from meterstream.rating.telecom.cli import add_event_command

        add_event_command(rate_sub)
    except ImportError:  # pragma: no cover - while the rating CLI is being built
        pass
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from meterstream.deploy.cli_errors import run_guarded  # user errors: one line, exit 2; never a traceback

    if getattr(args, "handler", None) is not None and args.func is None:  # rate subcommands set handler
        return run_guarded(args.command, lambda: int(args.handler(args) or 0))
    return run_guarded(args.command, lambda: int(args.func(args, Settings()) or 0))


if __name__ == "__main__":
    sys.exit(main())
