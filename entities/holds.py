"""Authorization holds: money reserved on a prepaid customer's balance by `POST /v1/authorize` (docs/authorization.md).

A hold (`HoldRow`) reserves `amount` (a decimal in the plan's currency, at the plan's rating precision) for one
session of one customer, until `expires_at`. While it is active and not expired it lowers the balance later
authorizations see (`held`). The session's rated usage consumes it (`consume`): each rated record of that
session takes its amount off the hold's `consumed` (the balance itself falls by the same amount when the
processor debits it, so the two are never counted twice), and the session's final record releases what is
left. Otherwise it ends by expiry: an expired hold counts for nothing from `expires_at` on, whether or not
`expire` has marked it yet, so no sweeper is needed for the answers to be right.

One hold per (tenant, customer, session id): authorizing the same session again replaces its reservation (a
Diameter CCR-Update asking for more units), and a session whose hold was released by its final record is over
(`Conflict` naming `session_id`). A hold without a session id ends only by expiry or `release`.
Amounts are decimal text, never floats; every sum runs in `money.EXACT` (it raises rather than rounds).
An authorization that places a hold reads what is held and writes its hold in one transaction under the
customer's hold lock (`reserving`: SQLite's write lock, PostgreSQL's advisory lock per tenant and customer), so
concurrent authorizations in several API processes never reserve more than the balance between them.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import DateTime, Index, Integer, String, UniqueConstraint, bindparam, select, text, update
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from meterstream.entities.common import Conflict, Invalid, NotFound, aware, new_ulid
from meterstream.entities.db import Base
from meterstream.rating.money import EXACT

__all__ = [
    "ACTIVE",
    "EXPIRED",
    "RELEASED",
    "HoldRow",
    "HoldSpec",
    "Reservation",
    "StoredHold",
    "consume",
    "consume_rated",
    "expire",
    "get_hold",
    "held",
    "place_hold",
    "release",
    "reserving",
    "session_of",
]

ACTIVE = "active"
RELEASED = "released"
EXPIRED = "expired"
MAX_TTL = timedelta(days=31)
ZERO = Decimal(0)


class HoldRow(Base):
    __tablename__ = "authorization_holds"
    __table_args__ = (
        UniqueConstraint("tenant", "customer", "session_id", name="uq_authorization_holds_session"),
        Index("ix_authorization_holds_customer", "tenant", "customer", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hold_id: Mapped[str] = mapped_column(String(26), unique=True)  # ULID, the API's id
    tenant: Mapped[str] = mapped_column(String(128))
    customer: Mapped[str] = mapped_column(String(256))  # the customer's external id
    session_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    meter: Mapped[str] = mapped_column(String(128))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[str] = mapped_column(String(40))  # decimal text: reserved
    consumed: Mapped[str] = mapped_column(String(40))  # decimal text: the session's rated usage so far
    quantity: Mapped[str] = mapped_column(String(40))  # decimal text: the usage authorized (seconds for a call)
    status: Mapped[str] = mapped_column(String(16))  # active | released | expired
    reason: Mapped[str | None] = mapped_column(String(256), nullable=True)  # why it ended
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class HoldSpec:
    tenant: str
    customer: str
    meter: str
    currency: str
    amount: Decimal  # >= 0
    quantity: Decimal  # >= 0
    ttl: timedelta
    session_id: str | None = None


@dataclass(frozen=True)
class StoredHold:
    id: str
    tenant: str
    customer: str
    session_id: str | None
    meter: str
    currency: str
    amount: Decimal
    consumed: Decimal
    quantity: Decimal
    status: str
    reason: str | None
    expires_at: datetime
    created_at: datetime

    @property
    def remaining(self) -> Decimal:
        """What the hold still reserves (0 once the session's rated usage reached it)."""
        return max(EXACT.subtract(self.amount, self.consumed), ZERO)

    def active_at(self, now: datetime) -> bool:
        return self.status == ACTIVE and now < self.expires_at


def _stored(row: HoldRow) -> StoredHold:
    return StoredHold(row.hold_id, row.tenant, row.customer, row.session_id, row.meter, row.currency,
                      Decimal(row.amount), Decimal(row.consumed), Decimal(row.quantity), row.status, row.reason,
                      aware(row.expires_at), aware(row.created_at))  # type: ignore[arg-type]  # fmt: skip


def _check(spec: HoldSpec) -> None:
    for name in ("amount", "quantity"):
        value = getattr(spec, name)
        if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
            raise Invalid(name, f"must be a finite decimal >= 0, got {value!r}")
    if not timedelta(0) < spec.ttl <= MAX_TTL:
        raise Invalid("hold_ttl_seconds", f"must be more than 0 and at most {int(MAX_TTL.total_seconds())} seconds")
    if spec.session_id is not None and not (0 < len(spec.session_id) <= 256):
        raise Invalid("session_id", "must be 1 to 256 characters")


def place_hold(sf: sessionmaker, spec: HoldSpec, *, now: datetime | None = None) -> StoredHold:
    """Reserve `spec.amount` until now + ttl. The session's earlier hold, if active (or expired: the session
    runs on), is replaced in place (same id, consumption kept: the new amount counts from the session's
    start); one released by the final record is a `Conflict` naming `session_id`. (An authorization that must
    read what is held and reserve in one step uses `reserving`.)"""
    _check(spec)
    with reserving(sf, spec.tenant, spec.customer) as r:
        return r.place(spec, now=now)


class Reservation:
    """The customer's hold lock, held until the transaction ends (`reserving`): `held` then `place` in it cannot
    interleave with another reservation of the same customer, from this process or another."""

    def held(self, currency: str, *, now: datetime | None = None, except_session: str | None = None) -> Decimal:
        """As module `held`, inside the locked transaction."""
        return _sum_held(self._held_rows(currency), now or datetime.now(UTC), except_session)

    def place(self, spec: HoldSpec, *, now: datetime | None = None) -> StoredHold:
        """As `place_hold`, inside the locked transaction (committed when `reserving` ends without error)."""
        _check(spec)
        if (spec.tenant, spec.customer) != self._customer:
            raise Invalid("customer", f"this reservation locks {self._customer!r}, not {spec.customer!r}")
        return self._place(spec, (now or datetime.now(UTC)).astimezone(UTC))  # stored as UTC (SQLite keeps no offset)

    def __init__(self, tenant: str, customer: str) -> None:
        self._customer = (tenant, customer)

    def _held_rows(self, currency: str) -> list[tuple]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _place(self, spec: HoldSpec, now: datetime) -> StoredHold:  # pragma: no cover - overridden
        raise NotImplementedError


@contextmanager
def reserving(sf: sessionmaker, tenant: str, customer: str) -> Iterator[Reservation]:
    """One write transaction that holds the customer's hold lock: on SQLite the database's write lock
    (BEGIN IMMEDIATE: every other writer waits, busy_timeout), on PostgreSQL a transaction-scoped advisory lock
    on (tenant, customer) (`pg_advisory_xact_lock`: other customers are not held up). Committed on a normal
    exit, rolled back on an exception. `POST /v1/authorize` with a hold reads `held`, computes the allowance
    and `place`s the hold in it, so two authorizations of one customer never both spend the same balance."""
    engine = sf.kw["bind"]
    if _raw_sqlite(engine):
        background_checkpoints(engine)
        conn = engine.raw_connection()
        try:
            cur = conn.cursor()
            try:
                if SQLITE_SYNCHRONOUS != "FULL":
                    cur.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
                cur.execute("PRAGMA wal_autocheckpoint=0")  # the commit never checkpoints: background_checkpoints
                cur.execute("BEGIN IMMEDIATE")
                try:
                    yield _SqliteReservation(tenant, customer, cur)
                    cur.execute("COMMIT")
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                finally:  # the pooled connection's defaults, for other writes
                    cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
                    if SQLITE_SYNCHRONOUS != "FULL":
                        cur.execute("PRAGMA synchronous=FULL")
            finally:
                cur.close()
        finally:
            conn.close()  # back to the pool
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(_LOCK_PG, {"ns": LOCK_NAMESPACE, "key": lock_key(tenant, customer)})
        yield _CoreReservation(tenant, customer, conn)


LOCK_NAMESPACE = 0x4D53_4831  # "MSH1": the first key of pg_advisory_xact_lock(int, int), the holds' own space
# SQLite's synchronous level for the hold transaction (WAL journal): NORMAL does not fsync the WAL at each commit,
# only at checkpoints. A committed hold survives a crash of the process (the WAL is in the OS's page cache) but
# may be lost with the machine's power (docs/authorization.md, "Durability of holds").
SQLITE_SYNCHRONOUS = "NORMAL"
_LOCK_PG = text("SELECT pg_advisory_xact_lock(:ns, :key)")
# SQLite's automatic checkpoint (after a commit leaves the WAL at 1,000 pages or more) copies the WAL into the
# database and fsyncs both, in the committing request: with a hold writing a few pages, one hold in 50-100 paid
# it (strace over bench/authorize.py: ~40 checkpoints per 2,200 holds), the p99 of authorizations with a hold.
# The hold's commit skips it; a background thread per engine checkpoints instead (`background_checkpoints`).
SQLITE_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default, restored on the pooled connection after a hold
CHECKPOINT_EVERY_S = 0.25
_checkpointers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_checkpointers_lock = threading.Lock()
log = logging.getLogger("meterstream.entities")


def background_checkpoints(engine) -> None:  # type: ignore[no-untyped-def]
    """Start, once per SQLite engine on a file, a daemon thread that runs `PRAGMA wal_checkpoint(PASSIVE)` every
    CHECKPOINT_EVERY_S on a connection of its own: it copies what the WAL holds into the database without waiting
    for (or blocking) readers and writers, so the WAL stays small while hold commits skip the automatic checkpoint.
    The thread ends when the engine is gone or its database cannot be checkpointed any more."""
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    with _checkpointers_lock:
        if engine in _checkpointers:
            return
        thread = threading.Thread(target=_checkpoint_loop, args=(weakref.ref(engine), path), daemon=True,
                                  name="sqlite-wal-checkpoint")  # fmt: skip
        _checkpointers[engine] = thread
    thread.start()


def _checkpoint_loop(ref: weakref.ref, path: str) -> None:
    try:
        conn = sqlite3.connect(path, timeout=0)
    except sqlite3.Error as exc:
        log.debug("sqlite WAL checkpoints not started for %s: %s", path, exc)
        return
    try:
        while ref() is not None:
            time.sleep(CHECKPOINT_EVERY_S)
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error as exc:
        log.debug("sqlite WAL checkpoints stopped for %s: %s", path, exc)
    finally:
        conn.close()


def lock_key(tenant: str, customer: str) -> int:
    """The second key of the customer's advisory lock: a 32-bit signed hash of (tenant, customer). Two customers
    sharing one only wait for each other; they never share holds."""
    digest = hashlib.blake2b(f"{tenant}\x1f{customer}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


class _SqliteReservation(Reservation):
    def __init__(self, tenant: str, customer: str, cur) -> None:  # type: ignore[no-untyped-def]
        super().__init__(tenant, customer)
        self._cur = cur

    def _held_rows(self, currency: str) -> list[tuple]:
        self._cur.execute(_HELD_SQLITE, (*self._customer, ACTIVE, currency))
        return [(a, c, datetime.fromisoformat(e), sid) for a, c, e, sid in self._cur.fetchall()]

    def _place(self, spec: HoldSpec, now: datetime) -> StoredHold:
        """Straight through the pooled DB-API connection (an ORM session cost ~2.7 ms of CPU per hold here)."""
        cur = self._cur
        expires_at = now + spec.ttl
        amount, quantity = str(spec.amount), str(spec.quantity)
        found = None
        if spec.session_id is not None:
            cur.execute(_FIND_SQLITE, (spec.tenant, spec.customer, spec.session_id))
            found = cur.fetchone()
        if found is not None and found[2] == RELEASED:
            raise Conflict("session_id", f"session {spec.session_id!r} has ended ({found[3]})")
        if found is None:
            hold_id, consumed, created_at = new_ulid(), "0", now
            cur.execute(_INSERT_SQLITE, (hold_id, spec.tenant, spec.customer, spec.session_id, spec.meter,
                                         spec.currency, amount, consumed, quantity, ACTIVE,
                                         expires_at.strftime(_SQLITE_TS), now.strftime(_SQLITE_TS),
                                         now.strftime(_SQLITE_TS)))  # fmt: skip
        else:
            hold_id, consumed, created_at = found[0], found[1], aware(datetime.fromisoformat(found[4]))
            cur.execute(
                _UPDATE_SQLITE,
                (
                    spec.meter,
                    spec.currency,
                    amount,
                    quantity,
                    ACTIVE,
                    expires_at.strftime(_SQLITE_TS),
                    now.strftime(_SQLITE_TS),
                    hold_id,
                ),
            )
        return StoredHold(hold_id, spec.tenant, spec.customer, spec.session_id, spec.meter, spec.currency,
                          spec.amount, Decimal(consumed), spec.quantity, ACTIVE, None, expires_at,
                          created_at)  # type: ignore[arg-type]  # fmt: skip


class _CoreReservation(Reservation):
    def __init__(self, tenant: str, customer: str, conn) -> None:  # type: ignore[no-untyped-def]
        super().__init__(tenant, customer)
        self._conn = conn

    def _held_rows(self, currency: str) -> list[tuple]:
        tenant, customer = self._customer
        return list(self._conn.execute(_HELD, {"tenant": tenant, "customer": customer, "currency": currency}).all())

    def _place(self, spec: HoldSpec, now: datetime) -> StoredHold:
        conn, t = self._conn, HoldRow.__table__
        found = None
        if spec.session_id is not None:
            found = conn.execute(
                select(t.c.hold_id, t.c.consumed, t.c.status, t.c.reason, t.c.created_at).where(
                    t.c.tenant == spec.tenant, t.c.customer == spec.customer, t.c.session_id == spec.session_id
                )
            ).first()
        if found is not None and found[2] == RELEASED:
            raise Conflict("session_id", f"session {spec.session_id!r} has ended ({found[3]})")
        values = {"meter": spec.meter, "currency": spec.currency, "amount": str(spec.amount),
                  "quantity": str(spec.quantity), "status": ACTIVE, "reason": None,
                  "expires_at": now + spec.ttl, "updated_at": now}  # fmt: skip
        if found is None:
            hold_id, consumed, created_at = new_ulid(), "0", now
            conn.execute(t.insert().values(hold_id=hold_id, tenant=spec.tenant, customer=spec.customer,
                                           session_id=spec.session_id, consumed=consumed, created_at=now,
                                           **values))  # fmt: skip
        else:
            hold_id, consumed, created_at = found[0], found[1], aware(found[4])
            conn.execute(update(t).where(t.c.hold_id == hold_id).values(**values))
        return StoredHold(hold_id, spec.tenant, spec.customer, spec.session_id, spec.meter, spec.currency,
                          spec.amount, Decimal(consumed), spec.quantity, ACTIVE, None, now + spec.ttl,
                          created_at)  # type: ignore[arg-type]  # fmt: skip


_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's own SQLite DATETIME text (naive UTC), so both paths read alike
_FIND_SQLITE = ("SELECT hold_id, consumed, status, reason, created_at FROM authorization_holds "
                "WHERE tenant = ? AND customer = ? AND session_id = ?")  # fmt: skip
_UPDATE_SQLITE = ("UPDATE authorization_holds SET meter = ?, currency = ?, amount = ?, quantity = ?, status = ?, "
                  "reason = NULL, expires_at = ?, updated_at = ? WHERE hold_id = ?")  # fmt: skip
_INSERT_SQLITE = ("INSERT INTO authorization_holds (hold_id, tenant, customer, session_id, meter, currency, amount, "
                  "consumed, quantity, status, reason, expires_at, created_at, updated_at) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)")  # fmt: skip


def _raw_sqlite(engine) -> bool:  # type: ignore[no-untyped-def]
    """Whether holds take the raw DB-API path (SQLite); PostgreSQL goes through SQLAlchemy Core."""
    return engine.dialect.name == "sqlite"


_HELD = select(HoldRow.amount, HoldRow.consumed, HoldRow.expires_at, HoldRow.session_id).where(
    HoldRow.tenant == bindparam("tenant"), HoldRow.customer == bindparam("customer"), HoldRow.status == ACTIVE,
    HoldRow.currency == bindparam("currency"))  # fmt: skip
_HELD_SQLITE = ("SELECT amount, consumed, expires_at, session_id FROM authorization_holds "
                "WHERE tenant = ? AND customer = ? AND status = ? AND currency = ?")  # fmt: skip


def held(sf: sessionmaker, tenant: str, customer: str, currency: str, *, now: datetime | None = None,
         except_session: str | None = None) -> Decimal:  # fmt: skip
    """The sum of what the customer's active, unexpired holds in `currency` still reserve (the hold of
    `except_session` left out: a session authorizing again replaces its own). A read without the lock: an
    answer that places no hold needs none."""
    now = now or datetime.now(UTC)
    engine = sf.kw["bind"]
    if engine.dialect.name == "sqlite":  # straight through the pooled DB-API connection, as keys.authenticate
        conn = engine.raw_connection()  # (an ORM session cost ~0.6 ms of CPU per call here, this ~0.05)
        try:
            cur = conn.cursor()
            cur.execute(_HELD_SQLITE, (tenant, customer, ACTIVE, currency))
            rows = [(a, c, datetime.fromisoformat(e), sid) for a, c, e, sid in cur.fetchall()]
            cur.close()
        finally:
            conn.close()
    else:
        with engine.connect() as c:
            rows = c.execute(_HELD, {"tenant": tenant, "customer": customer, "currency": currency}).all()
    return _sum_held(rows, now, except_session)


def _sum_held(rows, now: datetime, except_session: str | None) -> Decimal:  # type: ignore[no-untyped-def]
    total = ZERO
    for amount, consumed, expires_at, session_id in rows:
        if aware(expires_at) <= now or (except_session is not None and session_id == except_session):  # type: ignore[operator]
            continue
        total = EXACT.add(total, max(EXACT.subtract(Decimal(amount), Decimal(consumed)), ZERO))
    return total


def consume(sf: sessionmaker, tenant: str, customer: str, session_id: str, amount: Decimal, *, final: bool,
            now: datetime | None = None) -> StoredHold | None:  # fmt: skip
    """A rated record of the session: its `amount` is taken off the hold; the final record releases it.
    None when the session has no hold (nothing to do). A record of a released hold changes nothing
    (a replayed record is harmless)."""
    now = now or datetime.now(UTC)
    with sf.begin() as s:
        row = s.scalars(select(HoldRow).where(HoldRow.tenant == tenant, HoldRow.customer == customer,
                                              HoldRow.session_id == session_id)).first()  # fmt: skip
        if row is None:
            return None
        if row.status == RELEASED:
            return _stored(row)
        row.consumed = str(EXACT.add(Decimal(row.consumed), amount))
        if final:
            row.status, row.reason = RELEASED, "final record"
        row.updated_at = now
        s.flush()
        return _stored(row)


def release(sf: sessionmaker, tenant: str, hold_id: str, *, reason: str = "released",
            now: datetime | None = None) -> StoredHold:  # fmt: skip
    """End a hold by hand (the caller knows the session is over). NotFound for another tenant's or no hold."""
    now = now or datetime.now(UTC)
    with sf.begin() as s:
        row = s.scalars(select(HoldRow).where(HoldRow.tenant == tenant, HoldRow.hold_id == hold_id)).first()
        if row is None:
            raise NotFound(f"hold {hold_id!r} not found")
        if row.status == ACTIVE:
            row.status, row.reason, row.updated_at = RELEASED, reason, now
        s.flush()
        return _stored(row)


def get_hold(sf: sessionmaker, tenant: str, hold_id: str) -> StoredHold:
    with sf() as s:
        row = s.scalars(select(HoldRow).where(HoldRow.tenant == tenant, HoldRow.hold_id == hold_id)).first()
        if row is None:
            raise NotFound(f"hold {hold_id!r} not found")
        return _stored(row)


def expire(sf: sessionmaker, *, now: datetime | None = None) -> int:
    """Mark active holds past their expiry `expired` (housekeeping: `held` ignores them already)."""
    now = now or datetime.now(UTC)
    with sf.begin() as s:
        done = s.execute(update(HoldRow).where(HoldRow.status == ACTIVE, HoldRow.expires_at <= now)
                         .values(status=EXPIRED, reason="expired", updated_at=now))  # fmt: skip
        return int(done.rowcount or 0)


def consume_rated(sf: sessionmaker, records: list[dict]) -> int:
    """Rated records (schemas/rated.py) of sessions: each one naming a session consumes that session's hold by
    its `amount`, and the session's final record releases it. Returns how many holds it touched. A record names
    its session by a `session` field {"id", "final"} (a usage event's `session`, when the rated record carries
    it) or by the dimensions `session_id` and `final` ("true")."""
    touched = 0
    for r in records:
        session_id, final = session_of(r)
        if not session_id:
            continue
        if consume(sf, r["tenant"], r["customer"], session_id, Decimal(r["amount"]), final=final) is not None:
            touched += 1
    return touched


def session_of(record: dict) -> tuple[str | None, bool]:
    """(session id, final) of a rated record: its `session` field, else its dimensions; (None, False): none."""
    session = record.get("session")
    if isinstance(session, dict) and session.get("id"):
        return str(session["id"]), bool(session.get("final"))
    dims = record.get("dimensions") or {}
    sid = dims.get("session_id")
    return (sid or None), str(dims.get("final", "")).lower() in ("true", "1")
