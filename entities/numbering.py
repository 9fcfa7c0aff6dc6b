"""Gapless sequential document numbers per (tenant, issuer, series, year), allocated in the caller's transaction.

An invoice number such as `ACME-2026-000123` is the issuer's prefix, the year of the issue date and a
sequence of 6 digits that restarts at 1 every year. Each (tenant, issuer, series, year) has one counter row
in `invoice_numbers` holding the last number given. `allocate(s, ...)` runs inside the transaction that
finalizes the document (entities/invoices.py, entities/credit_notes.py):

1. `INSERT ... ON CONFLICT DO NOTHING` creates the counter row the first time (SQLite and PostgreSQL both
   support it; a concurrent creator waits for the other's commit, then does nothing);
2. `UPDATE invoice_numbers SET last = last + 1 WHERE <key>` — the UPDATE holds the row lock (PostgreSQL)
   or the database write lock (SQLite) until the transaction ends, so a second finalization waits, then
   increments the committed value (PostgreSQL re-reads the newest row version after the wait);
3. `SELECT last` reads the value this transaction wrote.

Why a counter row and not a sequence or `max(number) + 1`: a PostgreSQL SEQUENCE is not transactional (a
rolled-back transaction burns its value: a gap), and `max + 1` races (two readers see the same max: a
duplicate, refused by the unique index only after the fact). The counter row is part of the transaction:
a rollback restores it, so a failed finalization consumes no number, and two finalizations cannot read
the same value. The price is that finalizations of one series run one at a time while the row is locked;
a finalization is a few statements, so this is milliseconds. On SQLite the whole database has a single
writer anyway: `lock_for_write` takes the entity write lock (entities/outbox.py `begin_write`) as the
transaction's FIRST statement, so the transaction never reads a snapshot it then cannot write on (SQLite
would fail such an upgrade with SQLITE_BUSY instead of waiting). On PostgreSQL only rows are locked.

Number format: a `str.format` template with `{prefix}` (the issuer code), `{series}`, `{year}` and
`{seq}` (the counter, an int: `{seq:06d}` pads to 6 digits). `TEMPLATES` holds the defaults: the invoice
series `INV` is `{prefix}-{year}-{seq:06d}` (ACME-2026-000123), every other series (credit notes: `CN`)
`{prefix}-{series}-{year}-{seq:06d}` (ACME-CN-2026-000001). A caller may pass its own template; it must
contain `{year` and `{seq` (the counter restarts every year, so a number without its year would repeat).
After 999,999 documents in a year, `{seq:06d}` simply prints 7 digits: numbers stay unique and ordered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Integer, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.entities import outbox
from meterstream.entities.common import Invalid
from meterstream.entities.db import Base

INVOICE_SERIES = "INV"
CREDIT_NOTE_SERIES = "CN"
DEFAULT_TEMPLATE = "{prefix}-{series}-{year}-{seq:06d}"
TEMPLATES: dict[str, str] = {INVOICE_SERIES: "{prefix}-{year}-{seq:06d}"}

_CODE = re.compile(r"^[A-Za-z0-9]{1,32}$")  # no separator inside: the parts of a number stay readable


class InvoiceNumberRow(Base):
    """One counter per (tenant, issuer, series, year): `last` is the last number given (0: none yet)."""

    __tablename__ = "invoice_numbers"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    issuer: Mapped[str] = mapped_column(String(32), primary_key=True)
    series: Mapped[str] = mapped_column(String(32), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Allocated:
    """A number given: its text, the counter value and the counter's key."""

    number: str
    seq: int
    issuer: str
    series: str
    year: int


def lock_for_write(s: Session) -> None:
    """The first statement of every invoice, credit note or payment write: on SQLite the database write lock
    (the entity write lock row), so the transaction never reads a snapshot it cannot write on; on PostgreSQL
    nothing (the writes lock the rows they touch, `SELECT ... FOR UPDATE`)."""
    if s.get_bind().dialect.name == "sqlite":
        outbox.begin_write(s)


def check_code(field: str, value: object) -> str:
    if not isinstance(value, str) or not _CODE.match(value):
        raise Invalid(field, f"1-32 letters or digits (got {value!r})")
    return value


def check_template(template: str) -> str:
    if not isinstance(template, str) or "{seq" not in template or "{year" not in template:
        raise Invalid("template", f"must contain {{year}} and {{seq}} (got {template!r})")
    try:
        template.format(prefix="P", series="S", year=2026, seq=1)
    except (KeyError, IndexError, ValueError) as exc:
        raise Invalid("template", f"not a valid format: {exc} (fields: prefix, series, year, seq)") from None
    return template


def format_number(prefix: str, series: str, year: int, seq: int, template: str | None = None) -> str:
    """The text of number `seq` of `series` in `year` (pure). Default template: `TEMPLATES` / `DEFAULT_TEMPLATE`."""
    fmt = check_template(template) if template is not None else TEMPLATES.get(series, DEFAULT_TEMPLATE)
    return fmt.format(prefix=prefix, series=series, year=year, seq=seq)


def insert_ignore(s: Session, model: type[Base], **values: object) -> None:
    """`INSERT ... ON CONFLICT DO NOTHING` of one row (SQLite and PostgreSQL): creates a row unless a row with
    the same key exists or is being created by a concurrent transaction (which it then waits for)."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the store supports SQLite and PostgreSQL
        raise RuntimeError(f"invoice numbering supports SQLite and PostgreSQL, not {dialect}")
    s.execute(insert(model).values(**values).on_conflict_do_nothing())


def allocate(s: Session, tenant: str, issuer: str, series: str, year: int, template: str | None = None) -> Allocated:
    """Give the next number of (tenant, issuer, series, year) inside the caller's transaction (see the module
    docstring): committed with it, or given back by its rollback. Call `lock_for_write` first on SQLite."""
    check_code("issuer", issuer)
    check_code("series", series)
    if not isinstance(year, int) or isinstance(year, bool) or not 1 <= year <= 9999:
        raise Invalid("issue_date", f"a year 1-9999 (got {year!r})")
    if template is not None:
        check_template(template)
    key = (
        InvoiceNumberRow.tenant == tenant,
        InvoiceNumberRow.issuer == issuer,
        InvoiceNumberRow.series == series,
        InvoiceNumberRow.year == year,
    )
    now = datetime.now(UTC)
    insert_ignore(s, InvoiceNumberRow, tenant=tenant, issuer=issuer, series=series, year=year, last=0, updated_at=now)
    s.execute(update(InvoiceNumberRow).where(*key).values(last=InvoiceNumberRow.last + 1, updated_at=datetime.now(UTC)))
    seq = int(s.scalar(select(InvoiceNumberRow.last).where(*key)))
    return Allocated(format_number(issuer, series, year, seq, template), seq, issuer, series, year)


def last_number(sf: sessionmaker, tenant: str, issuer: str, series: str, year: int) -> int:
    """The last counter value given for (tenant, issuer, series, year); 0 when none."""
    with sf() as s:
        value = s.scalar(
            select(InvoiceNumberRow.last).where(
                InvoiceNumberRow.tenant == tenant,
                InvoiceNumberRow.issuer == issuer,
                InvoiceNumberRow.series == series,
                InvoiceNumberRow.year == year,
            )
        )
        return int(value or 0)


__all__ = [
    "CREDIT_NOTE_SERIES",
    "DEFAULT_TEMPLATE",
    "INVOICE_SERIES",
    "TEMPLATES",
    "Allocated",
    "InvoiceNumberRow",
    "allocate",
    "check_code",
    "format_number",
    "insert_ignore",
    "last_number",
    "lock_for_write",
]
