"""entities/holds.py `place_hold` on SQLite takes a raw DB-API path (one BEGIN IMMEDIATE transaction); the ORM
path stays for PostgreSQL. The same sequence of place/consume/release/expire through both paths must leave
identical rows (ids made deterministic), and the raw path must keep the semantics: replace in place, Conflict on
a released session, a new id otherwise."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from sqlalchemy import text

from meterstream.entities import holds
from meterstream.entities.common import Conflict
from meterstream.entities.db import make_engine, migrate, session_factory

NOW = datetime(2026, 12, 1, 10, tzinfo=UTC)


def spec(amount: str, session: str | None, minutes: int = 10, customer: str = "c1") -> holds.HoldSpec:
    return holds.HoldSpec("t1", customer, "voice_seconds", "EUR", D(amount), D(600), timedelta(minutes=minutes),
                          session)  # fmt: skip


def run_sequence(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, *, raw: bool) -> tuple[list, list]:
    counter = itertools.count(1)
    monkeypatch.setattr(holds, "new_ulid", lambda: f"H{next(counter):025d}")
    monkeypatch.setattr(holds, "_raw_sqlite", lambda engine: raw)
    engine = make_engine(url=f"sqlite:///{tmp_path / name}")
    migrate(engine=engine)
    sf = session_factory(engine)
    later, much_later = NOW + timedelta(minutes=1), NOW + timedelta(minutes=30)
    out = [
        holds.place_hold(sf, spec("0.70", "s1"), now=NOW),
        holds.place_hold(sf, spec("0.40", "s2", minutes=1), now=NOW),
        holds.place_hold(sf, spec("0.25", None), now=NOW),
        holds.place_hold(sf, spec("0.25", None), now=NOW),  # no session: a second, separate hold
        holds.place_hold(sf, spec("5", "s1", customer="c2"), now=NOW),  # same session id, other customer
    ]
    holds.consume(sf, "t1", "c1", "s1", D("0.22"), final=False, now=later)
    out.append(holds.place_hold(sf, spec("1.30", "s1", minutes=5), now=later))  # replaced in place, 0.22 kept
    holds.consume(sf, "t1", "c1", "s2", D("0.10"), final=True, now=later)
    with pytest.raises(Conflict) as e:
        holds.place_hold(sf, spec("0.10", "s2"), now=later)
    assert e.value.field == "session_id"
    out.append(holds.release(sf, "t1", out[2].id, reason="by hand", now=later))
    assert holds.expire(sf, now=much_later) == 3  # s1 (10:06), the second no-session hold, c2's s1
    out.append(holds.place_hold(sf, spec("0.90", "s1"), now=much_later))  # an expired session's hold runs on
    assert holds.held(sf, "t1", "c1", "EUR", now=much_later) == D("0.68")  # 0.90 - 0.22
    with engine.connect() as c:
        rows = [tuple(r) for r in c.execute(text("SELECT * FROM authorization_holds ORDER BY id"))]
    engine.dispose()
    return rows, out


def test_raw_and_orm_paths_leave_identical_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    orm_rows, orm_out = run_sequence(tmp_path, "orm.db", monkeypatch, raw=False)
    raw_rows, raw_out = run_sequence(tmp_path, "raw.db", monkeypatch, raw=True)
    assert len(raw_rows) == 5  # s1, s2, two without a session, c2's s1: replacing made no new row
    assert raw_rows == orm_rows
    assert raw_out == orm_out
    s1 = raw_out[5]
    assert (s1.id, s1.amount, s1.consumed, s1.remaining) == (raw_out[0].id, D("1.30"), D("0.22"), D("1.08"))
    assert s1.created_at == NOW and s1.expires_at == NOW + timedelta(minutes=6)
    assert raw_out[2].id != raw_out[3].id


def test_raw_path_serializes_concurrent_holds(tmp_path: Path) -> None:
    """Two connections placing the same session's hold at once: one row, the later amount wins, no lost update."""
    engine = make_engine(url=f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine=engine)
    sf = session_factory(engine)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(20):
                holds.place_hold(sf, spec(f"{k}.{i:02d}", "s1"), now=NOW)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM authorization_holds")).scalar() == 1
    engine.dispose()


def test_the_hold_transaction_runs_at_synchronous_normal_then_restores_full(tmp_path: Path) -> None:
    """docs/authorization.md, Durability of holds: NORMAL (1) inside the hold's transaction, the connection back at
    FULL (2) for the next user of the pooled connection (one connection here: StaticPool)."""
    from sqlalchemy.pool import StaticPool

    engine = make_engine(url=f"sqlite:///{tmp_path / 's.db'}", poolclass=StaticPool)
    migrate(engine=engine)
    sf = session_factory(engine)

    def level() -> int:
        conn = engine.raw_connection()
        try:
            return conn.cursor().execute("PRAGMA synchronous").fetchone()[0]
        finally:
            conn.close()

    def autocheckpoint() -> int:
        conn = engine.raw_connection()
        try:
            return conn.cursor().execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        finally:
            conn.close()

    assert level() == 2 and autocheckpoint() == 1000
    with holds.reserving(sf, "t1", "c1") as r:
        assert r._cur.execute("PRAGMA synchronous").fetchone()[0] == 1  # type: ignore[attr-defined]
        assert r._cur.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # type: ignore[attr-defined]
        r.place(spec("0.40", "s1"), now=NOW)
    assert level() == 2 and autocheckpoint() == 1000
    with pytest.raises(Conflict):  # a failed reservation restores it too
        holds.consume(sf, "t1", "c1", "s1", D("0.40"), final=True, now=NOW)
        holds.place_hold(sf, spec("0.10", "s1"), now=NOW)
    assert level() == 2
    assert holds.held(sf, "t1", "c1", "EUR", now=NOW) == 0  # 0.40 held, 0.40 consumed: nothing left
    engine.dispose()


def test_hold_commits_leave_the_checkpoint_to_a_background_thread(tmp_path: Path, monkeypatch) -> None:
    """A hold's commit never runs SQLite's automatic checkpoint (the WAL's copy into the database and two fsyncs:
    the p99 of authorizations with a hold); the engine's background thread does, every CHECKPOINT_EVERY_S.
    With the thread held back, 600 holds leave well over 1,000 pages in the WAL (the automatic checkpoint's
    threshold) and the database file as it was; let go, the thread copies them into it."""
    import os
    import sqlite3
    import time

    monkeypatch.setattr(holds, "CHECKPOINT_EVERY_S", 3600.0)
    db = tmp_path / "c.db"
    engine = make_engine(url=f"sqlite:///{db}")
    migrate(engine=engine)
    sf = session_factory(engine)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # start from an empty WAL
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    size = os.path.getsize(db)
    for i in range(600):
        holds.place_hold(sf, spec("0.01", f"s{i}", customer=f"c{i % 7}"), now=NOW)
    frames = (os.path.getsize(f"{db}-wal") - 32) // (page + 24)
    assert frames > 1000  # without the hold's wal_autocheckpoint=0 a commit would have checkpointed them
    assert os.path.getsize(db) == size  # nothing copied into the database yet
    monkeypatch.setattr(holds, "CHECKPOINT_EVERY_S", 0.05)
    holds.place_hold(sf, spec("0.01", "one-more"), now=NOW)  # the thread sleeps its hour out: a new engine's thread
    engine.dispose()
    engine = make_engine(url=f"sqlite:///{db}")
    sf = session_factory(engine)
    holds.place_hold(sf, spec("0.01", "and-one-more"), now=NOW)
    deadline = time.monotonic() + 10
    while os.path.getsize(db) == size:
        assert time.monotonic() < deadline, "the background thread did not checkpoint"
        time.sleep(0.05)
    assert holds.held(sf, "t1", "c0", "EUR", now=NOW) == D("0.86")  # 86 holds of c0 (i % 7 == 0), all kept
    engine.dispose()
