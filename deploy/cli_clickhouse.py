"""`meterstream clickhouse grants`: the statements that make tenants readers of their own rows on a ClickHouse
server (`aggregation.grants`); the embedded store's front needs none (docs/analytics.md)."""

from __future__ import annotations

import argparse
import sys

from meterstream.schemas.settings import Settings


def add_clickhouse_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("clickhouse", help="ClickHouse server set-up: tenant readers (users, row policies, grants)")
    cs = p.add_subparsers(dest="action", required=True)
    c = cs.add_parser("grants", help="print CREATE USER / CREATE ROW POLICY / GRANT SELECT statements for tenants")
    c.add_argument("--key", action="append", required=True, metavar="KEY",
                   help="a read or admin API key; its tenant becomes a user with this key as a password (repeat)")
    c.add_argument("--service-user", default="default",
                   help="the user the sink, the close and the API connect as (keeps reading every row)")
    c.set_defaults(func=_grants)


def _grants(args: argparse.Namespace, settings: Settings) -> int:
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
