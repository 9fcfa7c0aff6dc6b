"""The entity store: `meterstream catalog apply` and `meterstream customers|plans|subscriptions list`."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meterstream.deploy.cli_common import call, table

if TYPE_CHECKING:  # kept out of `meterstream --help`
    from meterstream.schemas.settings import Settings


def _entity_sessions(settings: Settings):  # type: ignore[no-untyped-def]
    from meterstream.entities.db import make_engine, migrate, session_factory

    engine = make_engine(settings)
    migrate(settings, engine)
    return session_factory(engine)


def newest_closed(settings: Settings) -> str | None:
    """The newest month closed for every customer (ClickHouse `period_closes`, through `open_store`: the embedded
    store's front while the sink runs), for `catalog apply` (entities/finalization.py `closed_month_end`); None
    when none is, when the embedded store does not exist yet (not created for this), or when ClickHouse cannot be
    read: then the entity store's own per-customer boundary is the only check, as in the API, and a warning says
    so on stderr."""
    from meterstream.aggregation.client import open_store
    from meterstream.aggregation.http_front import store_path
    from meterstream.invoice_emitter.ledger import newest_closed as read

    path = store_path(settings)
    if path is not None and not os.path.isdir(path):
        return None
    try:
        return read(open_store(settings), settings.clickhouse_database)
    except Exception as exc:  # StoreHeld, a server that does not answer: one line, the apply goes on
        print(f"warning: closed periods not read ({' '.join(str(exc).split())[:300]}): a subscription is checked "
              "against the entity store's invoiced periods only", file=sys.stderr)  # fmt: skip
        return None


def _catalog(args: Any, settings: Settings) -> int:
    from meterstream.entities.catalog_apply import apply_file

    result = apply_file(_entity_sessions(settings), args.file, tenants=args.tenant or [],
                        newest_closed=lambda: newest_closed(settings))  # fmt: skip
    for change in result.changes:
        if change.outcome != "unchanged" or args.verbose:
            print(change)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(result.summary())
    return 0


def _when(value) -> str:  # type: ignore[no-untyped-def]
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else ""


def _customers(args: Any, settings: Settings) -> int:
    from meterstream.entities.customers import list_customer_docs

    docs = list_customer_docs(_entity_sessions(settings), args.tenant, args.limit, args.offset)
    rows = [[d.external_id, d.name, d.currency or "", d.country or "", d.timezone, d.email or "", str(d.version)]
            for d in docs]  # fmt: skip
    table(f"customers of {args.tenant}", ["external_id", "name", "currency", "country", "timezone", "email",
                                          "version"], rows, as_json=args.as_json)  # fmt: skip
    return 0


def _plans(args: Any, settings: Settings) -> int:
    from meterstream.entities.plans import list_plans

    rows = []
    for p in list_plans(_entity_sessions(settings), args.tenant):
        charges = [
            *(f"usage:{m}" for m in p.usage),
            *(f"fixed:{f.code} {f.amount}/{f.interval}" for f in p.fixed),
            *(f"one_time:{c.code}" for c in p.one_time),
            *(f"installments:{c.code}" for c in p.installments),
        ]
        if p.telecom is not None:
            charges.append("telecom")
        rows.append([p.code, str(p.version), p.name, p.currency, p.interval, ", ".join(charges), _when(p.published_at)])
    table(f"plans of {args.tenant} (newest versions)", ["code", "version", "name", "currency", "interval", "charges",
                                                        "published_at"], rows, as_json=args.as_json)  # fmt: skip
    return 0


def _subscriptions(args: Any, settings: Settings) -> int:
    from meterstream.entities.subscriptions import list_subscriptions

    rows = []
    for sub in list_subscriptions(_entity_sessions(settings), args.tenant, args.customer):
        phases = "; ".join(f"{ph.plan_code}@{ph.plan_version} [{_when(ph.start)}, {_when(ph.end) or '...'})"
                           for ph in sub.phases)  # fmt: skip
        rows.append([sub.external_id, sub.customer, sub.status, sub.billing_anchor, phases, str(sub.version)])
    table(f"subscriptions of {args.tenant}", ["external_id", "customer", "status", "anchor", "phases", "version"],
          rows, as_json=args.as_json)  # fmt: skip
    return 0


Tenant = Annotated[str, typer.Option(help="the tenant")]
Json = Annotated[bool, typer.Option("--json", help="a JSON array of objects instead of a table")]


def register(app: typer.Typer) -> None:
    catalog = typer.Typer(no_args_is_help=True, help="apply a catalog file (plans, customers, subscriptions) to the "
                          "entity store")  # fmt: skip
    app.add_typer(catalog, name="catalog")

    @catalog.command("apply", help="idempotent, like kubectl apply: a second run changes nothing (docs/catalog.md)")
    def apply(
        file: Annotated[str, typer.Argument(help="YAML or JSON: today's catalog (plans + assignments) or the "
                                                 "extended format")],
        tenant: Annotated[list[str] | None, typer.Option(help="only this tenant (repeatable); with one, also the "
                                                              "tenant of entities that name none")] = None,
        verbose: Annotated[bool, typer.Option("-v", "--verbose", help="also list what is unchanged")] = False,
    ) -> int:  # fmt: skip
        return call(_catalog, locals())

    customers = typer.Typer(no_args_is_help=True, help="customers of a tenant in the entity store")
    app.add_typer(customers, name="customers")

    @customers.command("list", help="list customers")
    def customers_list(tenant: Tenant, limit: Annotated[int, typer.Option(min=0)] = 1000,
                       offset: Annotated[int, typer.Option(min=0)] = 0, as_json: Json = False) -> int:  # fmt: skip
        return call(_customers, locals())

    plans = typer.Typer(no_args_is_help=True, help="plans (newest versions) of a tenant in the entity store")
    app.add_typer(plans, name="plans")

    @plans.command("list", help="list plans (newest versions)")
    def plans_list(tenant: Tenant, as_json: Json = False) -> int:
        return call(_plans, locals())

    subscriptions = typer.Typer(no_args_is_help=True, help="subscriptions of a tenant in the entity store")
    app.add_typer(subscriptions, name="subscriptions")

    @subscriptions.command("list", help="list subscriptions")
    def subscriptions_list(tenant: Tenant, customer: Annotated[str | None, typer.Option(help="only this customer's")]
                           = None, as_json: Json = False) -> int:  # fmt: skip
        return call(_subscriptions, locals())
