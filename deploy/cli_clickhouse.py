"""`meterstream clickhouse grants`: the statements that make tenants readers of their own rows on a ClickHouse
server (`aggregation.grants`); the embedded store's front needs none (docs/analytics.md)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meterstream.deploy.cli_common import call

if TYPE_CHECKING:  # kept out of `meterstream --help`
    from meterstream.schemas.settings import Settings


def register(app: typer.Typer) -> None:
    group = typer.Typer(no_args_is_help=True, help="ClickHouse server set-up: tenant readers (users, row policies, "
                        "grants)")  # fmt: skip
    app.add_typer(group, name="clickhouse")

    @group.command("grants", help="print CREATE USER / CREATE ROW POLICY / GRANT SELECT statements for tenants")
    def grants(
        key: Annotated[list[str], typer.Option(metavar="KEY", help="a read or admin API key; its tenant becomes a "
                                               "user with this key as a password (repeat)")],
        service_user: Annotated[str, typer.Option(help="the user the sink, the close and the API connect as (keeps "
                                                       "reading every row)")] = "default",
    ) -> int:  # fmt: skip
        return call(_grants, locals())


def _grants(args: Any, settings: Settings) -> int:
    from meterstream.aggregation.front_auth import READ_ROLES
    from meterstream.aggregation.grants import script
    from meterstream.entities.db import make_engine, session_factory
    from meterstream.entities.keys import KeyRepository

    keys = KeyRepository(session_factory(make_engine(settings)))
    tenants: dict[str, list[str]] = {}
    for i, key in enumerate(args.key, 1):
        principal = keys.authenticate(key)
        if principal is None or principal.role not in READ_ROLES:
            why = "unknown or revoked" if principal is None else f"role {principal.role} cannot read"
            print(f"meterstream clickhouse grants: error: --key #{i}: {why}", file=sys.stderr)
            return 1
        tenants.setdefault(principal.tenant, []).append(key)
    sys.stdout.write(script(settings.clickhouse_database, tenants, args.service_user))
    return 0
