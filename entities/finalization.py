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

That boundary is recorded per customer, and only for a customer the close invoiced through a subscription. A
customer without one at the close (created later, or billed nothing) had none, so a subscription created for it
starting inside the closed month was accepted, and that month then came out of the next close as late-usage
adjustments of a month already closed. ClickHouse's `period_closes` marks a month closed for every customer of
every tenant (invoice_emitter/closed.py), so the end of its newest month is a boundary for every customer:
`closed_month_end` gives it in the customer's time zone, and every writer passes it to the store as
`finalized_until` (the store keeps the later of the two): the API's routes (api/closed_periods.py reads the month)
and `meterstream catalog apply` (entities/catalog_apply.py; the CLI reads it). The default subscription prices
customers in every time zone: its boundary is the month's end in the westernmost one (UTC-12), the last instant at
which any customer's month ends.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import DateTime, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.billing.periods import label_window
from meterstream.entities import outbox
from meterstream.entities.common import Invalid, NotFound, aware
from meterstream.entities.customers import get_customer_doc
from meterstream.entities.db import Base

DEFAULT_CUSTOMER = "*"
WESTERNMOST = "Etc/GMT+12"  # UTC-12 (the POSIX sign is inverted)


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


def closed_month_end(
    sf: sessionmaker,
    tenant: str,
    customer: str,
    when: datetime,
    newest_closed: Callable[[], str | None],
    now: datetime | None = None,
) -> datetime | None:
    """For a subscription write taking effect at `when`: the end, in `customer`'s time zone (UTC for a customer the
    store does not know: the write refuses it anyway; UTC-12 for the default subscription `*`), of the newest month
    closed for every customer, or None (module docstring). `newest_closed()` reads that month's label ("2026-11",
    None: none closed, or not readable); it is not called when `when` lies in the customer's current month or
    later: a month is closed once it has ended (`meterstream close` refuses an open one unless forced), so only a
    write dated before it can fall inside a closed month."""
    if customer == DEFAULT_CUSTOMER:
        zone = WESTERNMOST
    else:
        try:
            zone = get_customer_doc(sf, tenant, customer).timezone or "UTC"
        except NotFound:
            zone = "UTC"
    now = (now or datetime.now(UTC)).astimezone(ZoneInfo(zone))
    if when >= label_window(f"{now:%Y-%m}", zone)[0]:
        return None
    label = newest_closed()
    return None if label is None else label_window(label, zone)[1]


__all__ = [
    "FinalizedPeriodRow",
    "closed_month_end",
    "finalized_floor",
    "finalized_until",
    "record_finalized",
]
