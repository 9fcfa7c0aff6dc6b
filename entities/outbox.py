"""The transactional outbox of entity changes, and the relay's position in it.

Every write of a customer, plan version or subscription appends the changed document(s) to
`entity_outbox` (seq, key, value = `schemas.entities.encode_change(doc)`) in the same transaction as
the change itself, so a change is on the outbox if and only if it was committed. The relay
(entities/relay.py) reads it in seq order and puts each change on the compacted `entities` topic.

Seq order is commit order: every entity write starts with `begin_write`, which updates the single
row of `entity_outbox_head` and so holds its row lock (PostgreSQL) or the database write lock (SQLite)
until the transaction ends. Entity writers therefore run one at a time, and a reader that saw seq N
will never later see a smaller seq commit (the gap an autoincrement outbox has when two transactions
commit out of order). Entity writes are rare (people and catalog applies, not events), so this costs
nothing that matters; it is also why the write lock is taken first, before any read: on SQLite the
transaction then holds the write lock from its first statement, so it never reads a snapshot it cannot
write on.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Integer, LargeBinary, String, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.entities.db import Base
from meterstream.schemas.entities import EntityDoc, encode_change

# BIGINT primary keys are not rowid aliases on SQLite: there the column is INTEGER (autoincrement).
SeqType = BigInteger().with_variant(Integer(), "sqlite")


class OutboxRow(Base):
    __tablename__ = "entity_outbox"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 - never reuse a seq, even after the newest row is deleted

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    key: Mapped[bytes] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OutboxHeadRow(Base):
    """One row (id 1): the lock every entity write takes first; `writes` counts them."""

    __tablename__ = "entity_outbox_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    writes: Mapped[int] = mapped_column(BigInteger)


class RelayPositionRow(Base):
    __tablename__ = "relay_position"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def begin_write(s: Session) -> None:
    """Take the entity write lock: the first statement of every entity write transaction (see above)."""
    s.execute(update(OutboxHeadRow).where(OutboxHeadRow.id == 1).values(writes=OutboxHeadRow.writes + 1))


def append(s: Session, docs: Iterable[EntityDoc]) -> None:
    """Append the changed documents to the outbox, in the caller's transaction (after `begin_write`)."""
    now = datetime.now(UTC)
    for doc in docs:
        key, value = encode_change(doc)
        s.add(OutboxRow(key=key, value=value, created_at=now))
    s.flush()


def read_outbox(sf: sessionmaker, after_seq: int, limit: int) -> list[tuple[int, bytes, bytes]]:
    """Up to `limit` changes with seq > `after_seq`, in seq order: (seq, key, value)."""
    stmt = (
        select(OutboxRow.seq, OutboxRow.key, OutboxRow.value)
        .where(OutboxRow.seq > after_seq)
        .order_by(OutboxRow.seq)
        .limit(limit)
    )
    with sf() as s:
        return [(int(seq), bytes(key), bytes(value)) for seq, key, value in s.execute(stmt)]


def last_seq(sf: sessionmaker) -> int:
    """The newest seq (0 when the outbox is empty): the relay's backlog is last_seq - its position."""
    with sf() as s:
        return int(s.scalar(select(func.max(OutboxRow.seq))) or 0)


def get_relay_position(sf: sessionmaker, name: str) -> int:
    """The seq relay `name` has relayed up to (0: nothing yet)."""
    with sf() as s:
        seq = s.scalar(select(RelayPositionRow.seq).where(RelayPositionRow.name == name))
        return int(seq or 0)


def set_relay_position(sf: sessionmaker, name: str, seq: int) -> None:
    """Record that relay `name` has relayed every change up to `seq` (call after Kafka acknowledged them)."""
    now = datetime.now(UTC)
    with sf.begin() as s:
        row = s.get(RelayPositionRow, name, with_for_update=True)
        if row is None:
            s.add(RelayPositionRow(name=name, seq=seq, updated_at=now))
        else:
            row.seq, row.updated_at = seq, now
