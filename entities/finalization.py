"""Finalized periods: how far each customer's usage has been invoiced, so back-dated changes cannot rewrite it.

The close (invoice_emitter/) calls `record_finalized(sf, tenant, customer, until)` for every customer invoice
it finalizes, `until` being the end of the newest billing period that invoice closes. The store keeps, per
(tenant, customer), the latest such instant (`finalized_until`). Every subscription write (create, change,
cancel: entities/subscriptions.py) reads it in its own transaction, under the entity write lock, and refuses
a start or change taking effect before it (`Invalid` naming `phases[0].start` / `at`). Callers need to do
nothing: the own API, `meterstream catalog apply` and the Lago routes are guarded because the store is.

Why a close and a back-dated change cannot both win: `record_finalized` takes the same entity write lock as
every entity write (entities/outbox.py `begin_write`), so the two run one after the other. If the change
commits first, a close that records first and then reads the subscriptions sees it; if the record commits
first, the change reads it and is refused. The close must therefore record BEFORE it reads a customer's
subscriptions and usage for that period (or re-read them after recording); a close that then fails for that
customer leaves the period finalized without an invoice, which only refuses changes into it until the close
is run again (safe: nothing is rewritten).

The tenant's default subscription (`customer: "*"`) prices every customer without one of their own, so its
boundary is the newest `until` of any of the tenant's customers (`finalized_floor`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.entities import outbox
from meterstream.entities.common import Invalid, aware
from meterstream.entities.db import Base

DEFAULT_CUSTOMER = "*"


class FinalizedPeriodRow(Base):
    """(tenant, customer) -> the end of the newest invoiced (finalized) billing period."""

    __tablename__ = "finalized_periods"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer: Mapped[str] = mapped_column(String(256), primary_key=True)
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def _text(field: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > (128 if field == "tenant" else 256):
        raise Invalid(field, f"a non-empty string of at most {128 if field == 'tenant' else 256} characters")
    return value


def _instant(value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise Invalid("until", f"a time with a time zone offset (got {value!r})")
    return value.astimezone(UTC)


def record_finalized(sf: sessionmaker, tenant: str, customer: str, until: datetime) -> None:
    """Record that `customer`'s usage is invoiced up to `until` (the end of the newest period closed).

    Keeps the maximum: an older `until` (a re-run of an earlier close) changes nothing, the same one is
    idempotent. Runs under the entity write lock, so concurrent calls and subscription writes serialize."""
    _text("tenant", tenant)
    _text("customer", customer)
    when = _instant(until)
    with sf.begin() as s:
        outbox.begin_write(s)
        row = s.get(FinalizedPeriodRow, (tenant, customer))
        if row is None:
            s.add(FinalizedPeriodRow(tenant=tenant, customer=customer, until=when, updated_at=datetime.now(UTC)))
        elif aware(row.until) < when:  # type: ignore[operator]
            row.until, row.updated_at = when, datetime.now(UTC)


def finalized_floor(s: Session, tenant: str, customer: str) -> datetime | None:
    """In the caller's transaction: the end of the customer's newest finalized period (for `*`, the newest of
    any of the tenant's customers), or None when nothing is finalized."""
    if customer == DEFAULT_CUSTOMER:
        value = s.scalar(select(func.max(FinalizedPeriodRow.until)).where(FinalizedPeriodRow.tenant == tenant))
    else:
        value = s.scalar(
            select(FinalizedPeriodRow.until).where(
                FinalizedPeriodRow.tenant == tenant, FinalizedPeriodRow.customer == customer
            )
        )
    return aware(value)


def finalized_until(sf: sessionmaker, tenant: str, customer: str) -> datetime | None:
    """The end of the customer's newest finalized (invoiced) period, or None. `*`: see `finalized_floor`."""
    with sf() as s:
        return finalized_floor(s, tenant, customer)


__all__ = ["FinalizedPeriodRow", "finalized_floor", "finalized_until", "record_finalized"]
