"""One close at a time per entity store (invoice_emitter/close_lock.py), on SQLite (a file lock beside the database)
and PostgreSQL (an advisory lock): a second holder waits until the first lets go, whatever process or connection
it comes from. Two closes running at once read the ledger before either stored and billed the same late usage
twice (an audit: 13.70 of November usage charged 27.40 by the closes of two later periods)."""

from __future__ import annotations

import threading
import time

from sqlalchemy.orm import sessionmaker

from meterstream.entities.db import make_engine, session_factory
from meterstream.invoice_emitter.close_lock import close_lock


def _second_holder_waits(first: sessionmaker, second: sessionmaker) -> None:
    events: list[tuple[str, float]] = []
    inside = threading.Event()

    def hold() -> None:
        with close_lock(first):
            events.append(("first in", time.monotonic()))
            inside.set()
            time.sleep(0.6)
            events.append(("first out", time.monotonic()))

    t = threading.Thread(target=hold)
    t.start()
    assert inside.wait(30)
    with close_lock(second):  # another engine: another connection, another open file
        events.append(("second in", time.monotonic()))
    t.join(30)
    assert [name for name, _ in events] == ["first in", "first out", "second in"]
    assert events[2][1] >= events[1][1]
    # and it is free again afterwards, for either
    with close_lock(first):
        pass


def test_a_second_close_waits_for_the_first(sf, db_url: str) -> None:
    other = make_engine(url=db_url)
    try:
        _second_holder_waits(sf, session_factory(other))
    finally:
        other.dispose()


def test_an_in_memory_store_locks_within_the_process() -> None:
    a, b = make_engine(url="sqlite://"), make_engine(url="sqlite://")
    try:
        _second_holder_waits(session_factory(a), session_factory(b))
    finally:
        a.dispose()
        b.dispose()
