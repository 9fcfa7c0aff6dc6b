"""One way to reach ClickHouse: a clickhouse-connect client for `chdb:///path` (embedded) or `http://host:8123`.

`connect` opens exactly what the settings name. `open_store` is what commands use (`meterstream close`,
`query`, `billing run|drafts|close`): the embedded store through the ClickHouse HTTP front of the process that
owns it (the sink, while the pipeline runs), else the store itself; when another process owns the store and
its front cannot be used, one line says so (`StoreHeld`), and chdb is not opened at all (it would print its
own "Cannot lock file" line to stderr before failing).
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from meterstream.schemas.settings import Settings

STATUS_FILE = "status"  # in the store's directory: flock'ed by the process that opened it, and naming its PID


class StoreHeld(RuntimeError):
    """Another process owns the embedded store and its ClickHouse HTTP front cannot be used (a user error: the
    message says where the front was looked for and why it did not do)."""


def connect(settings: Settings | None = None, dsn: str | None = None, **kwargs: Any) -> Client:
    """Open a client. Embedded chdb allows one process per data path: the sink owns it while it runs."""
    if dsn is None:
        assert settings is not None, "give settings or a dsn"
        dsn = settings.clickhouse_dsn
    if dsn.startswith("chdb://"):
        from pathlib import Path

        path = dsn.removeprefix("chdb://")
        if path.startswith("/"):
            Path(path).mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=dsn, **kwargs)


def store_holder(path: str) -> int | None:
    """The PID of ANOTHER process that has the embedded store at `path` open, 0 when its PID cannot be read,
    None when no other process holds it. ClickHouse keeps an exclusive flock on the store's `status` file (which
    names its PID) while it has the store open; this process's own engine does not count."""
    import fcntl

    try:
        fd = os.open(os.path.join(path, STATUS_FILE), os.O_RDONLY)
    except OSError:  # no store there yet (or unreadable: opening it says why)
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 256).decode(errors="replace")
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
    finally:
        os.close(fd)
    found = re.search(r"^PID: (\d+)", text, re.M)
    pid = int(found.group(1)) if found else 0
    return None if pid == os.getpid() else pid


def _who(pid: int) -> str:
    """The holder as the user knows it: the sink, or the process's command line (from /proc)."""
    if not pid:
        return "another process"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
        command = " ".join(" ".join([os.path.basename(argv[0]), *argv[1:]]).split())  # one line
    except OSError:
        command = ""
    if "sink" in command:
        return f"the sink (pid {pid})"
    return f"process {pid} ({command[:80]})" if command else f"process {pid}"


def held_message(settings: Settings, path: str, pid: int) -> str:
    """One line: who owns the store, where its front was looked for, and why it does not do."""
    from meterstream.aggregation.http_front import front_problem, front_url, writer_password

    problem = front_problem(settings)
    url = front_url(settings)
    if problem is None:  # it answers, but this installation cannot sign in as the front's internal user
        where = f"its ClickHouse HTTP front at {url} cannot be used"
        problem = "refused"
        if writer_password(settings) is None:
            problem = (f"no password for its internal user here (METERSTREAM_CLICKHOUSE_HTTP_PASSWORD or "
                       f"{settings.home}/clickhouse-writer.secret)")  # fmt: skip
    elif not settings.clickhouse_http_port:
        where = "its ClickHouse HTTP front cannot be reached"
    else:
        where = f"its ClickHouse HTTP front does not answer at {url}"
    return (f"{_who(pid)} owns the embedded store {path} and {where}: {problem} (set "
            "METERSTREAM_CLICKHOUSE_HTTP_PORT to the port its front serves, or stop it)")  # fmt: skip


def open_store(settings: Settings, *, writer: bool = False) -> Client:
    """The client commands use: the embedded store's front when it answers (`writer`: as its internal user,
    which may write, for the close; else read-only, every tenant's rows), else the store itself (a ClickHouse
    server, or an embedded store nobody holds). `StoreHeld` when another process holds the embedded store;
    RuntimeError naming the store when it cannot be opened."""
    from meterstream.aggregation.http_front import front_client, store_path

    client = front_client(settings, writer=writer)
    if client is not None:
        return client
    path = store_path(settings)
    if path is None:
        return connect(settings)
    pid = store_holder(path)
    if pid is not None:
        raise StoreHeld(held_message(settings, path, pid))
    try:
        return connect(settings)
    except Exception as exc:  # chdb's reason, on one line
        reason = " ".join(str(exc).split())[:300]
        raise RuntimeError(f"cannot open the embedded store {path}: {reason}") from None


def is_embedded(client: Client) -> bool:
    """True for a client of the embedded store (chdb), False for one of a ClickHouse server. clickhouse-connect's
    chdb client module is looked up only if already imported (it imports chdb): no client of it exists otherwise."""
    module = sys.modules.get("clickhouse_connect.driver._chdbclient")
    return module is not None and isinstance(client, module.ChdbClient)


def _literal(value: int | str) -> str:
    """A setting's value or a path as ClickHouse SQL: an integer as is, a string quoted."""
    if type(value) is int:
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def insert_arrow(client: Client, table: str, data: Any, settings: dict[str, int | str]) -> None:
    """`client.insert_arrow(table, data, settings=settings)`, for the embedded store without its two copies.

    On chdb, clickhouse-connect writes the Arrow file of the whole block into a growing buffer in memory, copies
    that into a bytes object, writes those to a temporary file and runs `INSERT ... FROM INFILE ... FORMAT Arrow`:
    two copies of the block into freshly mapped memory, whose page faults (the kernel zeroing the pages) were the
    largest item of the sink's CPU (perf, session 15). Here the same file (Arrow's file writer, default options)
    is written straight to the temporary file, and the same statement reads it: the same parser, settings and
    errors (tests/aggregation/test_insert_arrow.py). A server gets `client.insert_arrow` (the block goes over HTTP)."""
    if not is_embedded(client):
        client.insert_arrow(table, data, settings=settings)
        return
    import tempfile

    import pyarrow as pa

    fd, path = tempfile.mkstemp(suffix=".arrow", prefix="meterstream-insert-")
    os.close(fd)
    try:
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, data.schema) as writer:
            writer.write_table(data)
        columns = ", ".join(f"`{name}`" for name in data.schema.names)
        clause = ", ".join(f"{name} = {_literal(value)}" for name, value in settings.items())
        client.command(
            f"INSERT INTO {table} ({columns}) FROM INFILE {_literal(path)}"
            + (f" SETTINGS {clause}" if clause else "")
            + " FORMAT Arrow"
        )
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
