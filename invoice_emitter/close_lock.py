"""One close at a time per entity store: closes of any periods, from any process, wait for each other.

A close reads what the stored invoices already billed for a closed period (`ledger.billed_lines`) and then stores
its own lines, which bill the rest as late usage. Two closes running at once (two periods closed by hand, a manual
close and `up`'s billing run, or `POST /v1/billing/close`) each read the ledger before the other stored, and both
billed the same late usage (an audit saw 27.40 charged for 13.70). So `close_period` holds this lock from before it
reads the ledger until its invoices are stored, and a second close waits for the first, then reads what it billed.

The lock lives where every closing process meets, the entity store: on PostgreSQL a session-level advisory lock
(`pg_advisory_lock`, released when the close ends or its connection drops); on SQLite, which is one machine's file,
an exclusive `flock` on `<database>.close.lock` beside it (released by the kernel if the process dies). An in-memory
SQLite store (tests) is one process: a lock of that process.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

log = logging.getLogger("meterstream.close")

ADVISORY_KEY = 0x4D535452434C4F53  # "MSTRCLOS": the closes' advisory lock on PostgreSQL (one per database)
_LOCAL = threading.Lock()  # an in-memory SQLite store: closes of this process


def _engine(sf: sessionmaker) -> Engine:
    bind = sf.kw.get("bind")
    if not isinstance(bind, Engine):
        raise TypeError(f"the entity store's sessions are not bound to an engine: {bind!r}")
    return bind


@contextmanager
def close_lock(sf: sessionmaker) -> Iterator[None]:
    """Hold the entity store's close lock for the block, waiting (and saying so once) while another close holds
    it."""
    engine = _engine(sf)
    started = time.monotonic()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar():
                log.warning("another close of this entity store is running: waiting for it")
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_KEY})
                log.warning("the other close ended after %.1fs: closing", time.monotonic() - started)
            conn.commit()  # the lock is the session's, not a transaction's: nothing held open meanwhile
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
                conn.commit()
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        with _LOCAL:
            yield
        return
    fd = os.open(f"{database}.close.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another close of this entity store is running: waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
            log.warning("the other close ended after %.1fs: closing", time.monotonic() - started)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


__all__ = ["ADVISORY_KEY", "close_lock"]
