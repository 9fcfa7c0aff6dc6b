"""Tenant readers on a ClickHouse server: the users, row policies and grants that `meterstream clickhouse grants`
prints (issue #17; the embedded store's front does the same in `tenant_access`).

Per tenant: a user named after the tenant whose passwords are the tenant's API keys (ClickHouse keeps their
SHA-256, `sha256_hash`; the entity store keeps only a hash of each key's secret, so the keys are given on
the command line and checked against the store first), `readonly = 2` (reads only; settings may change, as
Grafana needs); a permissive row policy `tenant = '<tenant>'` on every table with a `tenant` column (on
`dead_letters` also the unparsed ones whose Kafka key is `<tenant>/...`, as on the embedded front); SELECT
on those tables and on the views (`views.py`, and the rollups of schema.sql), which read the tables as the
querying user (SQL SECURITY INVOKER, ClickHouse's default for views), so they are filtered too. No other
grant: no other table, database, table function (file, url, remote, s3 need grants it does not get),
dictionary or system table beyond what every user may read. The service user (the sink and the close,
`default` unless named) gets a `USING 1` policy on the same tables so that it keeps reading every row once
the tables have policies. Running the statements again replaces the tenant's user (a revoked key is
dropped by leaving it out), its policies and its grants.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from meterstream.aggregation.tenant_access import quote, tenant_filter
from meterstream.aggregation.views import view_names

# the tables of schema.sql with a `tenant` column, and its rollup views (tests check both lists against the DDL)
TENANT_TABLES: tuple[str, ...] = ("rated_usage", "dead_letters", "invoices", "invoice_lines", "revenue_monthly")
SCHEMA_VIEWS: tuple[str, ...] = ("usage_hourly", "usage_daily", "usage_by_period")


def ident(name: str) -> str:
    """A ClickHouse identifier in backquotes."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def tenant_statements(db: str, tenant: str, keys: Sequence[str]) -> list[str]:
    """The statements that make `tenant` a reader of its own rows of `db`, signing in with any of `keys`."""
    if not keys:
        raise ValueError("keys: give at least one API key of the tenant (its password on the server)")
    user = ident(tenant)
    auth = ", ".join(f"sha256_hash BY {quote(key_sha256(k))}" for k in keys)
    out = [f"CREATE USER OR REPLACE {user} IDENTIFIED WITH {auth} SETTINGS readonly = 2"]
    policy = ident(f"meterstream_tenant_{tenant}")
    for table in TENANT_TABLES:
        out.append(f"CREATE ROW POLICY OR REPLACE {policy} ON {ident(db)}.{ident(table)} "
                   f"AS PERMISSIVE FOR SELECT USING {tenant_filter(tenant, table)} TO {user}")  # fmt: skip
    for table in (*TENANT_TABLES, *SCHEMA_VIEWS, *view_names()):
        out.append(f"GRANT SELECT ON {ident(db)}.{ident(table)} TO {user}")
    return out


def service_statements(db: str, service_user: str = "default") -> list[str]:
    """The service user's `USING 1` policies (it reads every tenant's rows: the sink, the close, the API)."""
    return [f"CREATE ROW POLICY OR REPLACE {ident('meterstream_service')} ON {ident(db)}.{ident(table)} "
            f"AS PERMISSIVE FOR SELECT USING 1 TO {ident(service_user)}" for table in TENANT_TABLES]  # fmt: skip


def script(db: str, tenants: dict[str, Sequence[str]], service_user: str = "default") -> str:
    """The whole script: the service user's policies, then each tenant's statements, `;`-terminated."""
    lines = [f"-- meterstream clickhouse grants: tenant readers of database {db} (service user {service_user})"]
    lines += [s + ";" for s in service_statements(db, service_user)]
    for tenant in sorted(tenants):
        lines.append(f"-- tenant {tenant}: {len(tenants[tenant])} key(s)")
        lines += [s + ";" for s in tenant_statements(db, tenant, tenants[tenant])]
    return "\n".join(lines) + "\n"
