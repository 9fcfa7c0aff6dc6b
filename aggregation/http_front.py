"""ClickHouse's HTTP interface over the embedded store, served by the process that owns it (the sink).

With the embedded default (`chdb://`) one process may open the store, and while the pipeline runs that
is the sink; so the sink serves ClickHouse's HTTP protocol on `Settings.clickhouse_http_port` (default
8123, 0 = off) at `Settings.clickhouse_http_host` (default 127.0.0.1), and every reader — `meterstream
query`, the API (`api/queries.py`), clickhouse-connect, curl, a notebook — uses the same SQL as against
a ClickHouse server. Statements run through `aggregation.chdb_sessions` (one chdb connection per HTTP
session on the sink's engine).

What a ClickHouse client sees: `query` (URL or form field) plus the POST body, `database`,
`default_format` (TabSeparated), `session_id`/`session_timeout`/`session_check`, `query_id` (echoed),
`readonly`, `param_<name>` for `{name:Type}` placeholders, any other parameter applied as a setting;
Basic auth, `X-ClickHouse-User`/`X-ClickHouse-Key` or `user`/`password`; request bodies in gzip,
deflate, lz4 or zstd (Content-Encoding); responses are never compressed (Accept-Encoding and
`enable_http_compression` are ignored, which HTTP allows and clickhouse-connect handles); results are
materialised before they are sent. Errors as ClickHouse sends them: its HTTP status for the code, the
`X-ClickHouse-Exception-Code` header and `Code: N. DB::Exception: ... (NAME) (version V)` as text.
GET `/` and `/ping` answer `Ok.`.

Who may connect (issue #17; threat model in docs/analytics.md):
- a tenant: user = tenant id, password = one of its `read` or `admin` API keys (`front_auth`, checked
  against the entity store, cached 5 s). It reads its own rows only (`tenant_access`: row filters pinned
  on its connection, every statement parsed by ClickHouse and refused if it names anything else), always
  read-only (`readonly=2`, or 1 if it asks), in database `meterstream`;
- the internal user `meterstream` with `Settings.clickhouse_http_password` (or the data directory's
  `clickhouse-writer.secret`): writes on POST (the sink's tools, the close), reads every tenant's rows when
  it asks `readonly` (`meterstream query`, the API: `front_client`) and on GET, as on a server;
- nobody else: no credentials, a wrong password or an unknown user fail with AUTHENTICATION_FAILED.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hmac
import logging
import os
import re
import signal
import threading
import time
import urllib.request
import uuid
import zlib
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from meterstream.aggregation.chdb_sessions import ChdbSessions, StoreError, ch_error
from meterstream.aggregation.front_auth import TenantKeys, keys_from_settings
from meterstream.aggregation.tenant_access import Catalogue, Refused, TenantPolicy
from meterstream.schemas.settings import Settings

log = logging.getLogger("meterstream.http_front")

INTERNAL_USER = "meterstream"
STORE_HEADER = "X-Meterstream-Store"  # the store's real path: `front_client` checks it is the right one
_TRANSPORT = {
    "query", "database", "default_format", "session_id", "session_timeout", "session_check", "query_id", "user",
    "password", "quota_key", "compress", "decompress", "buffer_size", "wait_end_of_query", "client_protocol_version",
    "role", "stacktrace", "close_session", "readonly", "enable_http_compression", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close",
}  # fmt: skip
_BODY_INSERT = re.compile(rb"^\s*(INSERT\s+INTO\s.*?\bFORMAT\s+\w+)[ \t]*\r?\n", re.I | re.S)
# ClickHouse's exceptionCodeToHTTPStatus for the codes a reader meets; anything else is 500
_STATUS = {194: 401, 192: 403, 193: 403, 516: 403, 497: 403, 62: 400, 36: 400, 6: 400, 27: 400, 38: 400, 41: 400,
           53: 400, 72: 400, 117: 400, 60: 404, 46: 404, 47: 404, 50: 404, 81: 404, 115: 404, 73: 404, 63: 404,
           202: 413, 48: 501, 159: 408}  # fmt: skip
_CONTENT_TYPES = {"json": "application/json", "csv": "text/csv", "tabseparated": "text/tab-separated-values",
                  "tsv": "text/tab-separated-values", "native": "application/octet-stream",
                  "rowbinary": "application/octet-stream", "arrow": "application/octet-stream",
                  "arrowstream": "application/octet-stream", "parquet": "application/octet-stream"}  # fmt: skip


def _decode_body(data: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "identity").lower()
    if encoding == "identity":
        return data
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    if encoding in ("lz4", "zstd"):  # lz4: the frame format clickhouse-connect sends
        import cramjam

        return bytes(getattr(cramjam, encoding).decompress(data))
    raise ch_error(340, "UNKNOWN_COMPRESSION_METHOD", f"Unknown HTTP Content-Encoding: {encoding}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clickhouse-connect's pool expects
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall between them
    timeout = 120  # seconds a connection may sit idle (or a read/write may stall) before it is closed
    server: _Server

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, *args: object) -> None:
        return

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            data = b"".join(parts)
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return _decode_body(data, self.headers.get("Content-Encoding"))

    def _handle(self) -> None:
        query_id = ""
        try:
            url = urlsplit(self.path)
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            body = self._body()
            if url.path.rstrip("/") in ("", "/ping", "/replicas_status") and not body and "query" not in params:
                return self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            if url.path.rstrip("/") != "":
                raise ch_error(0, "UNKNOWN_HANDLER", f"There is no handle {url.path}")
            ctype = self.headers.get("Content-Type") or ""
            if ctype.startswith("multipart/form-data"):  # clickhouse-connect's form path (large parameters)
                msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
                for part in msg.iter_parts():
                    if part.get_filename():
                        raise ch_error(48, "NOT_IMPLEMENTED", "External data is not supported")
                    params[part.get_param("name", header="content-disposition")] = part.get_content()
                body = b""
            query_id = params.get("query_id") or str(uuid.uuid4())
            trusted, readonly, scope = self._auth(params)
            database = params.get("database") or None
            settings = {k: v for k, v in params.items() if k not in _TRANSPORT and not k.startswith("param_")}
            if scope is not None:
                database = self._tenant_database(database, scope.tenant)
                try:
                    self.server.policy.check_settings(settings)
                except Refused as exc:
                    raise ch_error(exc.code, exc.name, f"{scope.tenant}: {exc.message}") from None
            sql = params.get("query", "")
            if not sql:  # the statement is the body, or its first part when data follows an INSERT ... FORMAT
                head = _BODY_INSERT.match(body)
                sql, body = (head.group(1).decode(), body[head.end() :]) if head else (body.decode(), b"")
            result = self.server.store.execute(
                sql,
                readonly=readonly,
                trusted=trusted,
                data=body,
                database=database,
                default_format=params.get("default_format") or "TabSeparated",
                params={k[6:]: v for k, v in params.items() if k.startswith("param_")},
                settings=settings,
                session_id=params.get("session_id") or None,
                session_timeout=float(params.get("session_timeout") or 60),
                session_check=params.get("session_check") == "1",
                scope=scope,
            )
            ctype = _CONTENT_TYPES.get(result.fmt.lower().removesuffix("withnames").removesuffix("withnamesandtypes"))
            headers = {
                "Content-Type": ctype or ("application/json" if "json" in result.fmt.lower() else "text/plain"),
                "X-ClickHouse-Format": result.fmt,
                "X-ClickHouse-Summary": orjson.dumps(result.summary).decode(),
            }
            self._send(200, result.body, headers, query_id)
        except StoreError as exc:
            self._error(exc, query_id)
        except (UnicodeDecodeError, ValueError, OSError, RuntimeError) as exc:  # malformed request or body
            self._error(ch_error(36, "BAD_ARGUMENTS", str(exc)), query_id)
        except Exception as exc:  # a bug here must still answer as ClickHouse would, not drop the connection
            log.exception("ClickHouse HTTP front: request failed")
            self._error(ch_error(1001, "STD_EXCEPTION", f"{type(exc).__name__}: {exc}"), query_id)

    def _auth(self, params: dict[str, str]) -> tuple[bool, int, Any]:
        """(trusted, readonly level, tenant scope or None): the internal user writes on POST and reads every
        tenant's rows when it asks `readonly` (or on GET); a tenant reads its own rows (readonly=2)."""
        user, password = params.get("user") or "default", params.get("password") or ""
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        elif self.headers.get("X-ClickHouse-User"):
            user, password = self.headers["X-ClickHouse-User"], self.headers.get("X-ClickHouse-Key") or ""
        asked = int(params.get("readonly") or 0)
        why = "Authentication failed: password is incorrect, or there is no user with such name"
        if user != INTERNAL_USER:
            keys = self.server.keys
            if keys is None or not keys.check(user, password):
                raise ch_error(516, "AUTHENTICATION_FAILED", f"{user}: {why}")
            return False, 1 if asked == 1 else 2, self.server.policy.scope(user)
        secret = self.server.internal_password
        if not secret or not hmac.compare_digest(password.encode(), secret.encode()):
            raise ch_error(516, "AUTHENTICATION_FAILED", f"{user}: {why}")
        readonly = asked or (2 if self.command == "GET" else 0)
        return readonly == 0 or (self.command == "GET" and not asked), readonly, None

    def _tenant_database(self, asked: str | None, tenant: str) -> str:
        db = self.server.policy.db
        if asked not in (None, "", "default", db):
            raise ch_error(497, "ACCESS_DENIED", f"{tenant}: tenant users read database {db} only")
        return db

    def _error(self, exc: StoreError, query_id: str) -> None:
        text = exc.text if "(version " in exc.text else f"{exc.text} (version {self.server.store.version})"
        headers = {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": str(exc.code)}
        self._send(_STATUS.get(exc.code, 500), (text + "\n").encode(), headers, query_id)

    def _send(self, status: int, body: bytes, headers: dict[str, str], query_id: str = "") -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if query_id:
            self.send_header("X-ClickHouse-Query-Id", query_id)
        self.send_header("X-ClickHouse-Timezone", self.server.store.timezone)
        self.send_header("X-ClickHouse-Server-Display-Name", "meterstream")
        self.send_header(STORE_HEADER, self.server.store.path)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    store: ChdbSessions
    internal_password: str | None
    keys: TenantKeys | None
    policy: TenantPolicy


class ClickHouseFront:
    """The HTTP front over a store path, serving from a daemon thread; `port` is the bound one."""

    def __init__(self, store_path: str, host: str = "127.0.0.1", port: int = 8123, internal_password: str | None = None,
                 keys: TenantKeys | None = None, database: str = "meterstream") -> None:  # fmt: skip
        self.store = ChdbSessions(store_path)
        self.server = _Server((host, port), _Handler)
        self.server.store = self.store
        self.server.internal_password = internal_password
        self.server.keys = keys
        self.server.policy = TenantPolicy(database, _Catalogue(self.store, database), _Aliases(self.store))
        self.host, self.port = host, self.server.server_address[1]
        name = f"clickhouse-http-{self.port}"
        threading.Thread(target=self.server.serve_forever, name=name, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.store.close()


class _Catalogue:
    """The analytics database's tables (those with a `tenant` column, and all), re-read every 2 seconds."""

    def __init__(self, store: ChdbSessions, db: str, ttl: float = 2.0) -> None:
        self.store, self.db, self.ttl = store, db, ttl
        self._cached: tuple[float, Catalogue] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Catalogue:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.ttl:
                p = {"db": self.db}
                tables = self.store.trusted_rows("SELECT name FROM system.tables WHERE database = {db:String}", p)
                tenant = self.store.trusted_rows(
                    "SELECT table FROM system.columns WHERE database = {db:String} AND name = 'tenant'", p
                )
                cat = Catalogue(self.db, frozenset(r[0] for r in tenant), frozenset(r[0] for r in tables))
                self._cached = (now, cat)
            return self._cached[1]


class _Aliases:
    """Setting aliases (`alias_for`), so that a pinned setting cannot be changed under another name."""

    def __init__(self, store: ChdbSessions) -> None:
        self.store = store
        self._aliases: dict[str, str] | None = None

    def __call__(self) -> dict[str, str]:
        if self._aliases is None:
            rows = self.store.trusted_rows("SELECT name, alias_for FROM system.settings WHERE alias_for != ''")
            self._aliases = {name: target for name, target in rows}
        return self._aliases


def store_path(settings: Settings) -> str | None:
    """The embedded store's path (None with a ClickHouse server)."""
    dsn = settings.clickhouse_dsn
    return os.path.realpath(dsn.removeprefix("chdb://")) if dsn.startswith("chdb://") else None


WRITER_SECRET_FILE = "clickhouse-writer.secret"  # under the data directory, mode 0600


def writer_password(settings: Settings, create: bool = False) -> str | None:
    """The password of the front's internal user `meterstream` (the one that may write): the configured
    `clickhouse_http_password`, else the secret kept in the data directory (`WRITER_SECRET_FILE`, readable by
    its owner only), which the sink creates when it starts the front (`create`), so that the close and other
    tools of the same installation write through the front while the sink owns the store."""
    if settings.clickhouse_http_password:
        return settings.clickhouse_http_password
    path = settings.home / WRITER_SECRET_FILE
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        if not create:
            return None
    import secrets

    settings.home.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip() or None
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret


def serve_front(settings: Settings) -> ClickHouseFront | None:
    """Start the front for the embedded store when configured; a port in use is logged, not fatal (the sink
    must keep inserting)."""
    path = store_path(settings)
    if path is None or not settings.clickhouse_http_port:
        return None
    try:
        front = ClickHouseFront(path, settings.clickhouse_http_host, settings.clickhouse_http_port,
                                writer_password(settings, create=True), keys_from_settings(settings),
                                settings.clickhouse_database)  # fmt: skip
    except OSError as exc:
        log.error("ClickHouse HTTP front not started on %s:%s: %s", settings.clickhouse_http_host,
                  settings.clickhouse_http_port, exc)  # fmt: skip
        return None
    log.info("ClickHouse HTTP front on http://%s:%s for %s", front.host, front.port, path)
    return front


def front_url(settings: Settings) -> str:
    """Where a client of this installation reaches the front (a wildcard listen address: this machine)."""
    host = "127.0.0.1" if settings.clickhouse_http_host in ("0.0.0.0", "") else settings.clickhouse_http_host
    return f"http://{host}:{settings.clickhouse_http_port}"


def front_problem(settings: Settings, timeout: float = 2.0) -> str | None:
    """None when the front of THIS store answers (not another store's, nor a ClickHouse server's); else why
    not, in a few words (what `aggregation.client.open_store` tells the user)."""
    path = store_path(settings)
    if path is None:
        return "a ClickHouse server has no front"
    if not settings.clickhouse_http_port:
        return "METERSTREAM_CLICKHOUSE_HTTP_PORT is 0 (off) here"
    try:
        with urllib.request.urlopen(f"{front_url(settings)}/ping", timeout=timeout) as resp:
            served = resp.headers.get(STORE_HEADER)
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc  # urllib wraps the socket's error
        return " ".join(str(getattr(reason, "strerror", None) or reason).split()) or type(exc).__name__
    if served != path:
        return f"it serves another store ({served})" if served else "what answers there is not a Meterstream front"
    return None


def front_answers(settings: Settings, timeout: float = 2.0) -> bool:
    """True when the front of THIS store answers (not another store's, nor a ClickHouse server's)."""
    return front_problem(settings, timeout) is None


def front_client(settings: Settings, writer: bool = False, **kwargs: Any):
    """A clickhouse-connect client to the front of this store as its internal user `meterstream`
    (`writer_password`), or None when the front does not answer or this installation has no writer password.
    `writer`: it may write (the close while the sink runs); else it reads every tenant's rows, read-only
    (`meterstream query`, the API)."""
    if not front_answers(settings):
        return None
    password = writer_password(settings)
    if password is None:
        return None
    kwargs = {"username": INTERNAL_USER, "password": password, **kwargs}
    if not writer:
        kwargs["settings"] = {"readonly": 2, **(kwargs.get("settings") or {})}
    import clickhouse_connect

    host = "127.0.0.1" if settings.clickhouse_http_host in ("0.0.0.0", "") else settings.clickhouse_http_host
    return clickhouse_connect.get_client(host=host, port=settings.clickhouse_http_port, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """Serve a store without a sink: `python -m meterstream.aggregation.http_front --store DIR --port N`."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--store", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8123)
    p.add_argument("--password-env", default="METERSTREAM_CLICKHOUSE_HTTP_PASSWORD",
                   help="environment variable holding the internal user's password")  # fmt: skip
    p.add_argument("--database", default="meterstream", help="the analytics database tenants read")
    args = p.parse_args(argv)
    os.makedirs(args.store, exist_ok=True)
    keys = keys_from_settings(Settings())  # tenants sign in with the keys of METERSTREAM_DATABASE_URL's store
    front = ClickHouseFront(args.store, args.host, args.port, os.environ.get(args.password_env), keys, args.database)
    print(f"listening on http://{front.host}:{front.port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    front.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
