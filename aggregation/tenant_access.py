"""What a tenant reader may run on the embedded store's ClickHouse HTTP front, and the rows it sees.

chdb (26.9) has no users of its own to switch between: every connection of the process is ClickHouse's
`default` user, `CREATE USER` / `CREATE ROW POLICY` fail (no writable access storage in clickhouse-local) and
`EXECUTE AS` is disabled. So a tenant's connection gets, before its `readonly = 2`, the setting
`additional_table_filters` with `tenant = '<tenant>'` for every table and view of the analytics database that
has a `tenant` column (ClickHouse applies it under every read of the table: in views, subqueries, joins,
`IN`, scalar subqueries; checked in tests/aggregation/test_http_front_tenants.py), and filters on
`system.databases` / `system.tables` / `system.columns` so that the catalogue shows those tables only. The
same SQL (`meterstream.rated_usage`, `meterstream.usage_daily`) then reads the tenant's rows, as it does on a
ClickHouse server with the row policies `aggregation.grants` generates.

What keeps those filters in force is `check`: each statement is parsed by ClickHouse (`EXPLAIN AST`, with
the request's query parameters substituted) and refused unless it only names the filtered tables, the
harmless system tables in `SAFE_SYSTEM_TABLES`, and the table functions in `SAFE_TABLE_FUNCTIONS`, calls
none of the functions that reach other tables, files or the network, changes no setting in SQL (SET or a
SETTINGS clause: settings travel as HTTP parameters, where `PINNED_SETTINGS` are refused), and is a read
(SELECT, DESCRIBE, SHOW TABLES/COLUMNS, EXISTS, SHOW CREATE, USE of the analytics database). The AST dump
is read as a tree whose every node states its number of children; a name with a line break in it (the
only way to forge lines) makes the counts disagree or hangs nodes under an identifier, and is refused.
Threat model and the full list: docs/analytics.md.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

ACCESS_DENIED = 497
SETTING_CONSTRAINT_VIOLATION = 452

# system tables a tenant may read: static server facts, and the catalogue (filtered to its tables)
SAFE_SYSTEM_TABLES = frozenset({
    "one", "numbers", "numbers_mt", "zeros", "zeros_mt", "settings", "functions", "formats", "data_type_families",
    "time_zones", "collations", "table_functions", "table_engines", "aggregate_function_combinators", "keywords",
    "build_options", "databases", "tables", "columns",
})  # fmt: skip
FILTERED_SYSTEM_TABLES = ("databases", "tables", "columns")
SAFE_TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries",
                                  "values", "view"})  # fmt: skip
# scalar functions that read other tables or dictionaries, files, the network, the host, or model files
_DENIED_FUNCTION = re.compile(
    r"(file|filecluster|url|urlcluster|s3\w*|gcs|oss|cosn|azure\w*|hdfs\w*|iceberg\w*|deltalake\w*|hudi\w*|paimon\w*"
    r"|remote|remotesecure|cluster|clusterallreplicas|mysql|postgresql|sqlite|mongodb|redis|odbc|jdbc|executable\w*"
    r"|python|arrowflight|ytsaurus|input|dict\w*|joinget\w*|hascolumnintable|formatrow\w*|catboostevaluate"
    r"|naivebayesclassifier|getclienthttpheader|addressto\w*|demangle|merge\w*|loop)",
    re.IGNORECASE,
)
# settings a tenant may not send (isolation, parsing, caches shared between tenants, server-side files)
PINNED_SETTINGS = frozenset({
    "additional_table_filters", "dialect", "implicit_select", "use_query_cache", "enable_reads_from_query_cache",
    "enable_writes_to_query_cache", "allow_introspection_functions", "output_format_schema", "format_schema",
    "allow_get_client_http_header", "readonly", "allow_ddl",
})  # fmt: skip
PINNED_PREFIXES = ("query_cache_", "format_template_", "format_schema_", "allow_experimental_kusto")
_READ_ROOTS = {"SelectWithUnionQuery", "DescribeQuery", "ShowTables", "ShowColumns", "ExistsTableQuery",
               "ShowCreateTableQuery", "UseQuery"}  # fmt: skip
_IN_FUNCTIONS = {"in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin", "globalnotnullin"}
_NAME = re.compile(r"^([A-Za-z0-9_]+)(?:\.([A-Za-z0-9_]+))?(?: \(alias [^\n]*\))?$")
_CHILDREN = re.compile(r" \(children (\d+)\)$")
_MALFORMED = "the statement's syntax tree is not well formed (a name with a line break?)"


class Refused(Exception):
    """A statement or setting a tenant may not run, with ClickHouse's code and name for it."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code, self.name, self.message = code, name, message


def _denied(message: str) -> Refused:
    return Refused(ACCESS_DENIED, "ACCESS_DENIED", message)


@dataclass
class Node:
    kind: str
    text: str  # the rest of the line (names, alias), without the children count
    children: list[Node] = field(default_factory=list)

    def walk(self, parent: Node | None = None) -> Iterator[tuple[Node, Node | None]]:
        yield self, parent
        for child in self.children:
            yield from child.walk(self)


def parse_ast(dump: str) -> Node:
    """The tree of an `EXPLAIN AST` dump; every node's children count is checked (a forged line fails it)."""
    stack: list[tuple[int, Node]] = []
    declared: dict[int, int] = {}
    root: Node | None = None
    for line in dump.rstrip("\n").split("\n"):
        indent = len(line) - len(line.lstrip(" "))
        body = line[indent:]
        m = _CHILDREN.search(body)
        body = body[: m.start()] if m else body
        kind, _, text = body.partition(" ")
        if not kind.isalnum():
            raise _denied(f"cannot read the statement's syntax tree at {body[:40]!r}")
        node = Node(kind, text)
        declared[id(node)] = int(m.group(1)) if m else 0
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if not stack:
            if root is not None or indent != 0:
                raise _denied(_MALFORMED)
            root = node
        elif stack[-1][0] != indent - 1:
            raise _denied(_MALFORMED)
        else:
            stack[-1][1].children.append(node)
        stack.append((indent, node))
    if root is None:
        raise _denied("empty statement")
    for node, _parent in root.walk():
        if len(node.children) != declared[id(node)]:
            raise _denied(_MALFORMED)
    return root


def tenant_filter(tenant: str, table: str = "") -> str:
    """The rows of `table` that are `tenant`'s. A dead letter the processor could not parse has no tenant; its
    Kafka key (`tenant/customer`, set by the API from the key's tenant) says whose it is (tenant ids have no
    '/')."""
    if table == "dead_letters":
        return f"tenant = {quote(tenant)} OR (tenant = '' AND startsWith(kafka_key, {quote(tenant + '/')}))"
    return f"tenant = {quote(tenant)}"


def quote(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def filters_setting(db: str, tables: Iterable[str], tenant: str) -> str:
    """The `SET additional_table_filters = {...}` that scopes a connection to `tenant`."""
    tables = sorted(tables)
    names = ", ".join(quote(t) for t in tables) or "''"
    entries = {f"{db}.{t}": tenant_filter(tenant, t) for t in tables}
    entries["system.databases"] = f"name = {quote(db)}"
    entries["system.tables"] = f"database = {quote(db)} AND name IN ({names})"
    entries["system.columns"] = f"database = {quote(db)} AND table IN ({names})"
    body = ", ".join(f"{quote(k)}: {quote(v)}" for k, v in entries.items())
    return f"SET additional_table_filters = {{{body}}}"


def check_setting(name: str, aliases: dict[str, str]) -> None:
    """Refuse a setting a tenant may not change (by its name or any alias of it)."""
    canonical = aliases.get(name, name)
    for n in {name, canonical}:
        if n.lower() in PINNED_SETTINGS or n.lower().startswith(PINNED_PREFIXES):
            raise Refused(SETTING_CONSTRAINT_VIOLATION, "SETTING_CONSTRAINT_VIOLATION",
                          f"Setting {name} should not be changed by a tenant user")  # fmt: skip


@dataclass(frozen=True)
class Catalogue:
    """The analytics database's tables: those a tenant reads (a `tenant` column) and all that exist."""

    db: str
    tenant_tables: frozenset[str]
    all_tables: frozenset[str]


def check(root: Node, cat: Catalogue) -> None:
    """Refuse a parsed statement that a tenant of `cat.db` may not run (see the module doc)."""
    for node, parent in root.walk():
        if node.kind == "Set":
            raise _denied("SET and SETTINGS clauses are not allowed for tenant users: send settings as HTTP "
                          "parameters (clickhouse-connect `settings=`)")  # fmt: skip
        if node.kind == "Explain":
            raise _denied("EXPLAIN is not allowed for tenant users")
        if node.kind in ("Identifier", "TableIdentifier") and node.children:
            raise _denied(_MALFORMED)
        if node.kind == "TableIdentifier":
            _table(node.text, cat)
        elif node.kind == "Function":
            name = node.text.split(" (alias ", 1)[0]
            if parent is not None and parent.kind == "TableExpression":
                if name.lower() not in SAFE_TABLE_FUNCTIONS:
                    raise _denied(f"table function {name}() is not allowed for tenant users")
            elif _DENIED_FUNCTION.fullmatch(name):
                raise _denied(f"function {name}() is not allowed for tenant users")
            if name.lower() in _IN_FUNCTIONS and node.children and len(node.children[0].children) == 2:
                right = node.children[0].children[1]
                if right.kind == "Identifier":
                    _table(right.text, cat)
    if root.kind not in _READ_ROOTS:
        raise _denied(f"{root.kind} is not allowed for tenant users")
    if root.kind == "SelectWithUnionQuery" and any(c.kind == "Literal" for c in root.children):
        raise _denied("INTO OUTFILE is not allowed")
    if root.kind in ("ExistsTableQuery", "ShowCreateTableQuery"):
        names = [c.text for c in root.children]
        if len(names) == 2:
            _table(".".join(names), cat)
        elif len(names) == 1:
            _table(names[0], cat)
        else:
            raise _denied(f"{root.kind} is not allowed for tenant users")
    if root.kind == "UseQuery" and [c.text for c in root.children] != [cat.db]:
        raise _denied(f"tenant users read database {cat.db} only")


def _table(text: str, cat: Catalogue) -> None:
    m = _NAME.match(text)
    if m is None:
        raise _denied(f"table {text.split(' (alias ')[0]!r} is not allowed for tenant users")
    first, second = m.groups()
    db, table = (first, second) if second is not None else (cat.db, first)
    if db == cat.db and table in cat.tenant_tables:
        return
    if db == "system" and table in SAFE_SYSTEM_TABLES:
        return
    if second is None and table not in cat.all_tables:
        return  # a WITH name (or no table at all: ClickHouse says so)
    raise _denied(f"Not enough privileges. To execute this query, it's necessary to have the grant SELECT ON "
                  f"{db}.{table}")  # fmt: skip


@dataclass(frozen=True)
class TenantScope:
    """What the front needs for one tenant's connection: session key, set-up statements, statement check."""

    tenant: str
    key: str
    setup: tuple[str, ...]
    check: Callable[[Callable[..., str], str, dict[str, str]], None]


class TenantPolicy:
    """Builds `TenantScope`s for a store; `catalogue` reads the analytics database's tables (trusted)."""

    def __init__(self, db: str, catalogue: Callable[[], Catalogue], aliases: Callable[[], dict[str, str]]) -> None:
        self.db = db
        self._catalogue = catalogue
        self._aliases = aliases

    def scope(self, tenant: str) -> TenantScope:
        """The tenant's scope on the tables of now. Its key names that set of tables, so a session opened
        before the DDL added a table is not reused with a check that would allow the new, unfiltered one."""
        cat = self._catalogue()

        def run_check(call: Callable[..., str], sql: str, params: dict[str, str]) -> None:
            now = self._catalogue()  # a table made since `cat` was read is not filtered here: refused
            check(parse_ast(call(f"EXPLAIN AST {sql}", params)),
                  Catalogue(self.db, cat.tenant_tables, cat.all_tables | now.all_tables))  # fmt: skip

        setup = (filters_setting(self.db, cat.tenant_tables, tenant),)
        tables = hashlib.sha256("\0".join(sorted(cat.tenant_tables)).encode()).hexdigest()[:16]
        return TenantScope(tenant, f"tenant:{tenant}:{tables}", setup, run_check)

    def check_settings(self, names: Iterable[str]) -> None:
        aliases = self._aliases()
        for name in names:
            check_setting(name, aliases)
