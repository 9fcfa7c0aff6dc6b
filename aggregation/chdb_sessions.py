"""Statements on the embedded store from inside the process that owns it, with ClickHouse's session rules.

chdb lets one process open a data path, but any number of connections inside that process share its
engine, and "concurrent queries from different connections are safe and run in parallel" (chdb 4.4,
`chdb.connect`). So the HTTP front (`aggregation.http_front`) does not borrow the sink's connection:
each ClickHouse HTTP session (`session_id`) gets its own connection to the same engine (its USE and SET
state are its own, as on a server), a request without a session gets a fresh one, and the sink's
inserts never see a reader's settings.

Readers run with `readonly=2` (settings may change, nothing may be written), set on the connection
before their statement, so ClickHouse itself refuses INSERT, ALTER, CREATE, DROP, SYSTEM and SET
readonly. `readonly=2` still lets a statement read local files or reach the network through table
functions and write files with INTO OUTFILE, and KILL QUERY is allowed, so a reader's statement is
also parsed by ClickHouse (`formatQuerySingleLine`: one statement, escapes resolved) and refused unless
it is a SELECT/SHOW/DESCRIBE/EXISTS/EXPLAIN/SET/USE without external-access functions or INTO OUTFILE.
The internal credential (`http_front.INTERNAL_USER`) skips that check and may write.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

READONLY = 164
UNKNOWN_SETTING = 115
SESSION_NOT_FOUND = 372
SESSION_IS_LOCKED = 373
ACCESS_DENIED = 497
UNKNOWN_FORMAT = 73

_CODE = re.compile(r"Code: (\d+)\.")
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
# INSERT ... [SETTINGS ...] FORMAT f whose data is the request body: run as FROM INFILE (binary-safe)
_INSERT_FORMAT = re.compile(r"^\s*(INSERT\s+INTO\s+.+?)\s+(SETTINGS\s+.+?\s+)?FORMAT\s+(\w+)\s*$", re.I | re.S)
_READ_KINDS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "SET", "USE")
# functions (table or scalar) that read files, run programs, reach other servers or the host Python
_EXTERNAL = re.compile(
    r"\b(file|fileCluster|url|urlCluster|s3\w*|gcs|oss|cosn|azure\w*|hdfs\w*|iceberg\w*|deltaLake\w*|hudi\w*"
    r"|paimon\w*|remote|remoteSecure|cluster|clusterAllReplicas|mysql|postgresql|sqlite|mongodb|redis|odbc|jdbc"
    r"|executable|executablePool|python|arrowflight|ytsaurus)\s*\(",
    re.IGNORECASE,
)
_PYTHON_FORMATS = {"dataframe", "datastore", "arrowtable", "debug"}  # chdb post-processes these in Python


class StoreError(Exception):
    """A ClickHouse exception: its numeric code and its text (`Code: N. DB::Exception: ...`)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def ch_error(code: int, name: str, message: str) -> StoreError:
    return StoreError(code, f"Code: {code}. DB::Exception: {message}. ({name})")


def _error(exc: Exception) -> StoreError:
    text = str(exc).strip()
    at = text.find("Code: ")
    text = text[at:] if at > 0 else text
    m = _CODE.match(text)
    return StoreError(int(m.group(1)) if m else 1001, text if m else f"Code: 1001. DB::Exception: {text}")


def _escaped(value: str) -> str:
    """A string in ClickHouse's Escaped form, as query parameter values are read."""
    for raw, esc in (("\\", "\\\\"), ("\n", "\\n"), ("\t", "\\t"), ("\r", "\\r"), ("\0", "\\0")):
        value = value.replace(raw, esc)
    return value


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def trailing_format(sql: str) -> str | None:
    m = _TRAILING_FORMAT.search(sql)
    return m.group(1) if m else None


@dataclass
class Result:
    body: bytes
    fmt: str
    summary: dict[str, str]


@dataclass
class _Handle:
    conn: Any
    readonly: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)

    def call(self, sql: str, fmt: str = "TabSeparated", params: dict[str, str] | None = None) -> Any:
        try:
            return self.conn.query(sql, fmt, params=params or {})
        except Exception as exc:  # chdb raises RuntimeError / ChdbError with ClickHouse's text
            raise _error(exc) from None


class ChdbSessions:
    """Connections to one embedded store, per ClickHouse HTTP session, with readonly levels."""

    def __init__(self, path: str, max_sessions: int = 256) -> None:
        import chdb  # here, not at import: clients of the front (`front_client`) need no engine

        self._connect = chdb.connect
        self.path = os.path.realpath(path)
        self.max_sessions = max_sessions
        self._root = self._connect(self.path)  # keeps the engine open while the front lives
        self._sessions: dict[tuple[str, str, int], tuple[_Handle, float]] = {}
        self._guard = threading.Lock()
        row = self._root.query("SELECT version(), timezone()", "TabSeparated").bytes().decode().strip()
        self.version, self.timezone = row.split("\t")

    def _open(self, readonly: int, setup: tuple[str, ...] = ()) -> _Handle:
        handle = _Handle(self._connect(self.path), readonly)
        try:
            for stmt in setup:  # a tenant's row filters, set before readonly so that it cannot change them
                handle.call(stmt)
            if readonly:
                handle.call(f"SET readonly = {readonly}")
        except BaseException:
            handle.conn.close()
            raise
        return handle

    def trusted_rows(self, sql: str, params: dict[str, str] | None = None) -> list[list[str]]:
        """Rows (as text) of a read on a connection of its own, for the front's own bookkeeping."""
        handle = self._open(0)
        try:
            text = handle.call(sql, "TSV", params).bytes().decode()
        finally:
            handle.conn.close()
        return [line.split("\t") for line in text.splitlines()]

    def _session(self, session_id: str, readonly: int, timeout: float, check: bool, scope: Any = None) -> _Handle:
        now = time.monotonic()
        with self._guard:
            for key, (h, ttl) in list(self._sessions.items()):  # expire idle sessions (ClickHouse: session_timeout)
                if now - h.last_used > ttl and not h.lock.locked():
                    del self._sessions[key]
                    h.conn.close()
            key = (getattr(scope, "key", ""), session_id, readonly)  # a session is its user's only
            entry = self._sessions.get(key)
            if entry is None:
                if check:
                    raise ch_error(SESSION_NOT_FOUND, "SESSION_NOT_FOUND", f"Session {session_id} not found")
                if len(self._sessions) >= self.max_sessions:
                    idle = [(h.last_used, k) for k, (h, _) in self._sessions.items() if not h.lock.locked()]
                    if idle:
                        victim = min(idle)[1]
                        self._sessions.pop(victim)[0].conn.close()
                entry = (self._open(readonly, getattr(scope, "setup", ())), timeout)
                self._sessions[key] = entry
            handle = entry[0]
            handle.last_used = now
            return handle

    def execute(
        self,
        sql: str,
        *,
        readonly: int,
        trusted: bool,
        data: bytes = b"",
        database: str | None = None,
        default_format: str = "TabSeparated",
        params: dict[str, str] | None = None,
        settings: dict[str, str] | None = None,
        session_id: str | None = None,
        session_timeout: float = 60.0,
        session_check: bool = False,
        scope: Any = None,
    ) -> Result:
        """Run one statement; `data` (an HTTP body after a `query` parameter) is the INSERT's input. `scope`
        (`tenant_access.TenantScope`): the tenant's connection set-up and statement check."""
        if default_format.lower() in _PYTHON_FORMATS:
            raise ch_error(UNKNOWN_FORMAT, "UNKNOWN_FORMAT", f"Unknown format {default_format}")
        if session_id:
            handle = self._session(session_id, readonly, session_timeout, session_check, scope)
            if not handle.lock.acquire(blocking=False):
                msg = f"Session {session_id} is locked by a concurrent client"
                raise ch_error(SESSION_IS_LOCKED, "SESSION_IS_LOCKED", msg)
        else:
            handle = self._open(readonly, getattr(scope, "setup", ()))
            handle.lock.acquire()
        try:
            return self._run(handle, sql, data, trusted, database, default_format, params or {}, settings or {},
                             scope)  # fmt: skip
        finally:
            handle.last_used = time.monotonic()
            handle.lock.release()
            if not session_id:
                handle.conn.close()

    def _run(
        self, h: _Handle, sql: str, data: bytes, trusted: bool, database: str | None, fmt: str,
        params: dict[str, str], settings: dict[str, str], scope: Any = None,
    ) -> Result:  # fmt: skip
        if database:  # every time: a USE statement in the session may have moved it since
            h.call(f"USE `{database.replace('`', '')}`")
        for name, value in settings.items():
            if not _SETTING_NAME.match(name):
                raise ch_error(UNKNOWN_SETTING, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
            h.call(f"SET {name} = {_quote(value)}")
        if data:
            insert = _INSERT_FORMAT.match(sql)
            if insert is None or not trusted:
                sql = sql + "\n" + data.decode("utf-8", errors="strict")
                data = b""
        if not trusted:
            self._check_read(h, sql)
        if scope is not None:
            self._check_scope(h, sql, params, scope)
        start = time.monotonic()
        if data:
            head, clause, in_fmt = insert.groups()
            fd, tmp = tempfile.mkstemp(prefix="meterstream-front-", suffix=".bin")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                res = h.call(f"{head} FROM INFILE {_quote(tmp)} {clause or ''}FORMAT {in_fmt}", fmt, params)
            finally:
                os.unlink(tmp)
            rows, size = str(res.rows_read()), str(res.bytes_read())
            summary = {"read_rows": rows, "read_bytes": size, "written_rows": rows, "written_bytes": size}
            return Result(b"", fmt, summary | {"elapsed_ns": str(int((time.monotonic() - start) * 1e9))})
        res = h.call(sql, fmt, params)
        summary = {"read_rows": str(res.rows_read()), "read_bytes": str(res.bytes_read()), "written_rows": "0",
                   "written_bytes": "0", "elapsed_ns": str(int((time.monotonic() - start) * 1e9))}  # fmt: skip
        return Result(res.bytes(), trailing_format(sql) or fmt, summary)

    @staticmethod
    def _check_read(h: _Handle, sql: str) -> None:
        """Refuse what `readonly=2` lets through: statements other than reads, external access, INTO OUTFILE."""
        canon = h.call("SELECT formatQuerySingleLine({q:String})", "TSVRaw", {"q": _escaped(sql)}).bytes().decode()
        kind = canon.lstrip("( ").split(" ", 1)[0].upper()
        why = None
        if kind not in _READ_KINDS:
            why = f"{kind} is not a read"
        elif m := _EXTERNAL.search(canon):
            why = f"function {m.group(1)}() reaches outside the store"
        elif re.search(r"\bINTO\s+OUTFILE\b", canon, re.IGNORECASE):
            why = "INTO OUTFILE writes a file"
        if why:
            raise ch_error(READONLY, "READONLY", f"Cannot execute query in readonly mode: {why}")

    @staticmethod
    def _check_scope(h: _Handle, sql: str, params: dict[str, str], scope: Any) -> None:
        """The tenant's check (`tenant_access`) on ClickHouse's parse of the statement."""
        from meterstream.aggregation.tenant_access import Refused

        def call(stmt: str, p: dict[str, str]) -> str:
            return h.call(stmt, "TSVRaw", p).bytes().decode()

        try:
            scope.check(call, sql, params)
        except Refused as exc:
            raise ch_error(exc.code, exc.name, f"{scope.tenant}: {exc.message}") from None

    def close(self) -> None:
        """Close idle connections; one a request still uses is left to the process exit (closing a chdb
        connection under a running query is not safe)."""
        with self._guard:
            for h, _ in self._sessions.values():
                if h.lock.acquire(blocking=False):
                    h.conn.close()
            self._sessions.clear()
        self._root.close()
