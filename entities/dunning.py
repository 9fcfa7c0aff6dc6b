"""Collections in the entity store (docs/dunning.md): dunning policies, the log of the steps done, and the late
fees waiting for the customer's next invoice. Migration 0010. The rules are billing/dunning.py (pure); the
billing run applies them (invoice_emitter/dunning_run.py).

- Policies: one per tenant (`customer` None: the tenant's default) and one per customer overriding it
  (`put_policy` creates or replaces; `policy_for` picks the customer's, else the tenant's, else none: no
  dunning for that customer).
- The log: one row per (tenant, invoice, step) done (`record_step`; a step already there is not done again:
  the unique key makes two runs, even concurrent ones, do each step once).
- Charges: a late fee becomes a charge row (unique per source invoice and step) and then a `one_time` line of
  the customer's next invoice: the close loads the pending ones (`pending_charge_lines`, called by
  invoice_emitter/store_terms.py). Whether a charge is billed is derived from the issued invoices, as the
  coupons' use is: a charge whose line key is on an issued (not voided) invoice of its customer is billed, so
  re-running a close never bills it twice; `settle_billed` (each collections run) then records which invoice
  billed it (a cache for the listing and the next loads), and makes a charge whose invoice was voided pending
  again. A charge goes on the invoice of the first period that ends after the day it
  became due; a customer without an invoice in that period keeps it pending for the next one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Index,
    Integer,
    String,
    UniqueConstraint,
    and_,
    exists,
    select,
)
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column, sessionmaker

from meterstream.billing.dunning import LateFee, Policy, PolicyError
from meterstream.entities.common import Invalid, NotFound, aware
from meterstream.entities.customers import find_customer_row
from meterstream.entities.db import Base
from meterstream.entities.invoice_rules import ISSUED, VOIDED, from_minor
from meterstream.entities.invoices import InvoiceRow

__all__ = [
    "TENANT_DEFAULT",
    "Charge",
    "CustomerState",
    "DunningChargeRow",
    "DunningLogRow",
    "DunningPolicyRow",
    "LogEntry",
    "StoredPolicy",
    "add_charge",
    "charge_line_key",
    "customer_state",
    "delete_policy",
    "done_steps",
    "get_policy",
    "list_charges",
    "list_log",
    "list_policies",
    "load_policies",
    "open_suspensions",
    "pending_charge_lines",
    "policy_for",
    "put_policy",
    "record_step",
    "settle_billed",
]

TENANT_DEFAULT = ""  # the `customer` column of a tenant's default policy
LINE_KEY_PREFIX = "dunning:"


class DunningPolicyRow(Base):
    __tablename__ = "dunning_policies"
    __table_args__ = (UniqueConstraint("tenant", "customer", name="uq_dunning_policies_tenant_customer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    customer: Mapped[str] = mapped_column(String(256))
    reminder_days: Mapped[list[int]] = mapped_column(JSON)
    late_fee_kind: Mapped[str] = mapped_column(String(16))
    late_fee_value: Mapped[str | None] = mapped_column(String(40), nullable=True)
    late_fee_after_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    late_fee_period_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    late_fee_max_periods: Mapped[int | None] = mapped_column(Integer, nullable=True)
    suspend_after_last: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DunningLogRow(Base):
    __tablename__ = "dunning_log"
    __table_args__ = (
        UniqueConstraint("tenant", "invoice_id", "step", name="uq_dunning_log_tenant_invoice_step"),
        Index("ix_dunning_log_tenant_customer", "tenant", "customer"),
        # the open suspensions (`open_suspensions`) by index: a step's rows, per tenant and customer (migration 0013)
        Index("ix_dunning_log_step_tenant_customer", "step", "tenant", "customer", "invoice_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    invoice_id: Mapped[str] = mapped_column(String(256))
    customer: Mapped[str] = mapped_column(String(256))
    step: Mapped[str] = mapped_column(String(32))
    due_on: Mapped[date] = mapped_column(Date)
    done_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    notification_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class DunningChargeRow(Base):
    __tablename__ = "dunning_charges"
    __table_args__ = (
        UniqueConstraint("tenant", "source_invoice_id", "step", name="uq_dunning_charges_source_step"),
        Index("ix_dunning_charges_tenant_customer", "tenant", "customer", "billed_invoice_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    customer: Mapped[str] = mapped_column(String(256))
    source_invoice_id: Mapped[str] = mapped_column(String(256))
    step: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(512))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    due_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    billed_invoice_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    billed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# --- policies ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredPolicy:
    tenant: str
    customer: str | None  # None: the tenant's default
    policy: Policy
    created_at: datetime
    updated_at: datetime


def _to_policy(row: DunningPolicyRow) -> Policy:
    fee = None
    if row.late_fee_kind != "none":
        fee = LateFee(row.late_fee_kind, Decimal(row.late_fee_value or "0"),  # type: ignore[arg-type]
                      after_days=int(row.late_fee_after_days or 0), period_days=row.late_fee_period_days,
                      max_periods=row.late_fee_max_periods)  # fmt: skip
    return Policy(tuple(row.reminder_days), fee, bool(row.suspend_after_last))


def _stored(row: DunningPolicyRow) -> StoredPolicy:
    return StoredPolicy(row.tenant, row.customer or None, _to_policy(row), aware(row.created_at),  # type: ignore[arg-type]
                        aware(row.updated_at))  # type: ignore[arg-type]  # fmt: skip


def _scope(customer: str | None) -> str:
    if customer is None:
        return TENANT_DEFAULT
    if not isinstance(customer, str) or not customer.strip():
        raise Invalid("customer", f"a customer's external id, or none for the tenant's default (got {customer!r})")
    return customer


def put_policy(sf: sessionmaker, tenant: str, customer: str | None, policy: Policy,
               at: datetime | None = None) -> tuple[StoredPolicy, bool]:  # fmt: skip
    """Create or replace the tenant's default policy (`customer` None) or a customer's own; (policy, created).
    A customer the tenant does not have: NotFound."""
    scope = _scope(customer)
    now = (at or datetime.now(UTC)).astimezone(UTC)
    fee = policy.late_fee
    values = {
        "reminder_days": list(policy.reminder_days),
        "late_fee_kind": fee.kind if fee else "none",
        "late_fee_value": format(fee.value, "f") if fee else None,
        "late_fee_after_days": fee.after_days if fee else None,
        "late_fee_period_days": fee.period_days if fee else None,
        "late_fee_max_periods": fee.max_periods if fee else None,
        "suspend_after_last": bool(policy.suspend_after_last),
        "updated_at": now,
    }
    with sf.begin() as s:
        if customer is not None and find_customer_row(s, tenant, customer) is None:
            raise NotFound(f"customer {customer!r}")
        row = s.scalar(
            select(DunningPolicyRow)
            .where(DunningPolicyRow.tenant == tenant, DunningPolicyRow.customer == scope)
            .with_for_update()
        )
        created = row is None
        if row is None:
            row = DunningPolicyRow(tenant=tenant, customer=scope, created_at=now, **values)
            s.add(row)
        else:
            for name, value in values.items():
                setattr(row, name, value)
        s.flush()
        return _stored(row), created


def get_policy(sf: sessionmaker, tenant: str, customer: str | None) -> StoredPolicy:
    with sf() as s:
        row = s.scalar(select(DunningPolicyRow).where(DunningPolicyRow.tenant == tenant,
                                                      DunningPolicyRow.customer == _scope(customer)))  # fmt: skip
        if row is None:
            raise NotFound("dunning policy" + (f" of customer {customer!r}" if customer else " (tenant default)"))
        return _stored(row)


def delete_policy(sf: sessionmaker, tenant: str, customer: str | None) -> None:
    with sf.begin() as s:
        row = s.scalar(select(DunningPolicyRow).where(DunningPolicyRow.tenant == tenant,
                                                      DunningPolicyRow.customer == _scope(customer)))  # fmt: skip
        if row is None:
            raise NotFound("dunning policy" + (f" of customer {customer!r}" if customer else " (tenant default)"))
        s.delete(row)


def list_policies(sf: sessionmaker, tenant: str) -> list[StoredPolicy]:
    """The tenant's policies: its default first, then the customers' by external id."""
    with sf() as s:
        rows = s.scalars(select(DunningPolicyRow).where(DunningPolicyRow.tenant == tenant)
                         .order_by(DunningPolicyRow.customer)).all()  # fmt: skip
        return [_stored(r) for r in rows]


def load_policies(s: Session, tenants: Iterable[str] | None = None) -> dict[tuple[str, str], Policy]:
    """(tenant, customer or TENANT_DEFAULT) -> policy, for `tenants` (None: all). A stored policy that no longer
    passes the rules (it cannot, unless edited by hand) is left out and named in the log of the run."""
    stmt = select(DunningPolicyRow)
    if tenants is not None:
        stmt = stmt.where(DunningPolicyRow.tenant.in_(list(tenants)))
    out: dict[tuple[str, str], Policy] = {}
    for row in s.scalars(stmt):
        try:
            out[(row.tenant, row.customer)] = _to_policy(row)
        except PolicyError:
            continue
    return out


def policy_for(policies: dict[tuple[str, str], Policy], tenant: str, customer: str) -> Policy | None:
    """The customer's own policy, else its tenant's default, else None (no dunning)."""
    return policies.get((tenant, customer)) or policies.get((tenant, TENANT_DEFAULT))


# --- the log ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    invoice_id: str
    customer: str
    step: str
    due_on: date
    done_at: datetime
    notification_id: str | None
    detail: dict[str, Any] | None


def done_steps(s: Session, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
    """(tenant, invoice id) -> the steps done for it (only invoices with some step appear)."""
    wanted = set(keys)
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    tenants = {t for t, _ in wanted}
    if not wanted:
        return {}
    ids = sorted({i for _, i in wanted})
    for start in range(0, len(ids), 500):
        rows = s.execute(select(DunningLogRow.tenant, DunningLogRow.invoice_id, DunningLogRow.step).where(
            DunningLogRow.tenant.in_(tenants), DunningLogRow.invoice_id.in_(ids[start:start + 500])))  # fmt: skip
        for tenant, invoice_id, step in rows:
            if (tenant, invoice_id) in wanted:
                out[(tenant, invoice_id)].add(step)
    return dict(out)


def open_suspensions(s: Session, tenant: str | None = None, customer: str | None = None
                     ) -> dict[tuple[str, str], list[str]]:  # fmt: skip
    """(tenant, customer) -> the invoices it was suspended for by dunning and not reactivated since (of one tenant,
    or one customer of it, when given). One query: the `suspend` rows without a `reactivate` row for the same
    invoice, read from indexes (`ix_dunning_log_step_tenant_customer`, and the unique key for the reactivation);
    only the open ones leave the database."""
    if customer is not None and tenant is None:
        raise ValueError("customer: needs its tenant")
    lift = aliased(DunningLogRow)
    query = select(DunningLogRow.tenant, DunningLogRow.customer, DunningLogRow.invoice_id).where(
        DunningLogRow.step == "suspend",
        ~exists().where(lift.tenant == DunningLogRow.tenant, lift.invoice_id == DunningLogRow.invoice_id,
                        lift.step == "reactivate"),
    )  # fmt: skip
    if tenant is not None:
        query = query.where(DunningLogRow.tenant == tenant)
    if customer is not None:
        query = query.where(DunningLogRow.customer == customer)
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for t, c, invoice_id in s.execute(query):
        out[(t, c)].append(invoice_id)
    return {k: sorted(v) for k, v in out.items()}


def _insert_ignore(s: Session, model: type[Base], values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when the row was inserted."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(model).values(**values).on_conflict_do_nothing().returning(model.id)  # type: ignore[attr-defined]
    return s.execute(stmt).first() is not None  # a conflict returns no row (rowcount is not reliable here)


def record_step(s: Session, tenant: str, invoice_id: str, customer: str, step: str, due_on: date,
                notification_id: str | None = None, detail: dict[str, Any] | None = None,
                at: datetime | None = None) -> bool:  # fmt: skip
    """Log `step` of the invoice as done, in the caller's transaction; False when it was done already (by this or
    a concurrent run): the caller then does not do it again."""
    return _insert_ignore(s, DunningLogRow, {
        "tenant": tenant, "invoice_id": invoice_id, "customer": customer, "step": step, "due_on": due_on,
        "done_at": (at or datetime.now(UTC)).astimezone(UTC), "notification_id": notification_id, "detail": detail,
    })  # fmt: skip


def list_log(sf: sessionmaker, tenant: str, customer: str) -> list[LogEntry]:
    with sf() as s:
        rows = s.scalars(select(DunningLogRow).where(DunningLogRow.tenant == tenant, DunningLogRow.customer == customer)
                         .order_by(DunningLogRow.due_on, DunningLogRow.id)).all()  # fmt: skip
        return [LogEntry(r.invoice_id, r.customer, r.step, r.due_on, aware(r.done_at), r.notification_id,  # type: ignore[arg-type]
                         r.detail) for r in rows]  # fmt: skip


# --- charges ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Charge:
    tenant: str
    customer: str
    source_invoice_id: str
    step: str
    kind: str
    description: str
    currency: str
    amount_minor: int
    due_on: date
    billed_invoice_id: str | None

    @property
    def amount(self) -> Decimal:
        return from_minor(self.amount_minor, self.currency)

    @property
    def line_key(self) -> str:
        return charge_line_key(self.source_invoice_id, self.step)


def charge_line_key(source_invoice_id: str, step: str) -> str:
    return f"{LINE_KEY_PREFIX}{source_invoice_id}:{step}"


def _charge(r: DunningChargeRow) -> Charge:
    return Charge(r.tenant, r.customer, r.source_invoice_id, r.step, r.kind, r.description, r.currency,
                  int(r.amount_minor), r.due_on, r.billed_invoice_id)  # fmt: skip


def add_charge(s: Session, tenant: str, customer: str, source_invoice_id: str, step: str, description: str,
               currency: str, amount_minor: int, due_on: date, kind: str = "late_fee",
               at: datetime | None = None) -> bool:  # fmt: skip
    """A pending charge, in the caller's transaction (once per source invoice and step: False when it exists)."""
    if amount_minor <= 0:
        raise Invalid("amount", f"a charge must be positive (got {amount_minor} minor units)")
    return _insert_ignore(s, DunningChargeRow, {
        "tenant": tenant, "customer": customer, "source_invoice_id": source_invoice_id, "step": step, "kind": kind,
        "description": description[:512], "currency": currency, "amount_minor": amount_minor, "due_on": due_on,
        "created_at": (at or datetime.now(UTC)).astimezone(UTC),
    })  # fmt: skip


def list_charges(sf: sessionmaker, tenant: str, customer: str) -> list[Charge]:
    with sf() as s:
        rows = s.scalars(select(DunningChargeRow).where(DunningChargeRow.tenant == tenant,
                                                        DunningChargeRow.customer == customer)
                         .order_by(DunningChargeRow.due_on, DunningChargeRow.id)).all()  # fmt: skip
        return [_charge(r) for r in rows]


def _line_keys_issued(s: Session, customers: set[tuple[str, str]], since: date) -> dict[str, str]:
    """Line key -> issued invoice id, for the dunning lines on the issued (not voided) invoices of `customers`
    issued on or after `since`."""
    out: dict[str, str] = {}
    tenants = {t for t, _ in customers}
    names = {c for _, c in customers}
    stmt = select(InvoiceRow.tenant, InvoiceRow.customer, InvoiceRow.invoice_id, InvoiceRow.document).where(
        InvoiceRow.status.in_(ISSUED), InvoiceRow.tenant.in_(tenants), InvoiceRow.customer.in_(names),
        InvoiceRow.issue_date >= since,
    )  # fmt: skip
    for tenant, customer, invoice_id, document in s.execute(stmt):
        if (tenant, customer) not in customers or LINE_KEY_PREFIX not in document:
            continue
        for line in orjson.loads(document).get("lines", ()):
            key = line.get("line_key") or ""
            if key.startswith(LINE_KEY_PREFIX):
                out[f"{tenant}\x1f{customer}\x1f{key}"] = invoice_id
    return out


def _unbilled(s: Session, where: Sequence[Any] = ()) -> tuple[list[DunningChargeRow], dict[str, str]]:
    rows = list(s.scalars(select(DunningChargeRow).where(DunningChargeRow.billed_invoice_id.is_(None), *where)
                          .order_by(DunningChargeRow.due_on, DunningChargeRow.id)))  # fmt: skip
    if not rows:
        return [], {}
    issued = _line_keys_issued(s, {(r.tenant, r.customer) for r in rows}, min(r.due_on for r in rows))
    return rows, issued


def _issued_key(r: DunningChargeRow) -> str:
    return f"{r.tenant}\x1f{r.customer}\x1f{charge_line_key(r.source_invoice_id, r.step)}"


def pending_charge_lines(s: Session, period: str) -> dict[tuple[str, str], list[tuple[str, dict[str, Any]]]]:
    """(tenant, customer) -> [(currency, version 1 line)] of the charges to bill on the invoice of `period`
    (YYYY-MM): not billed by an issued invoice yet and due before the period ended (before the 1st of the next
    month). Each line is a `one_time` line keyed `dunning:<source invoice>:<step>`, its `applies_to` naming the
    source invoice (so no period's late-usage adjustment ever counts it as usage of that period)."""
    try:
        year, month = int(period[:4]), int(period[5:7])
        end = date(year + month // 12, month % 12 + 1, 1)
    except (ValueError, IndexError):
        raise Invalid("period", f"must be YYYY-MM (got {period!r})") from None
    rows, issued = _unbilled(s, (DunningChargeRow.due_on < end,))
    out: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for r in rows:
        if _issued_key(r) in issued:
            continue
        amount = format(from_minor(int(r.amount_minor), r.currency), "f")
        out[(r.tenant, r.customer)].append((r.currency, {
            "kind": "one_time", "code": r.kind, "description": r.description, "quantity": "1",
            "unit_price": amount, "amount": amount, "line_key": charge_line_key(r.source_invoice_id, r.step),
            "applies_to": r.source_invoice_id,
        }))  # fmt: skip
    return dict(out)


def settle_billed(sf: sessionmaker, at: datetime | None = None) -> int:
    """Record, for each pending charge now on an issued invoice, which invoice billed it; returns how many. A
    charge whose invoice was voided since is pending again (the next invoice bills it)."""
    now = (at or datetime.now(UTC)).astimezone(UTC)
    with sf.begin() as s:
        voided = s.scalars(select(DunningChargeRow).join(InvoiceRow, and_(
            InvoiceRow.tenant == DunningChargeRow.tenant, InvoiceRow.invoice_id == DunningChargeRow.billed_invoice_id,
        )).where(InvoiceRow.status == VOIDED)).all()  # fmt: skip
        for r in voided:
            r.billed_invoice_id, r.billed_at = None, None
        s.flush()
        rows, issued = _unbilled(s)
        n = 0
        for r in rows:
            invoice_id = issued.get(_issued_key(r))
            if invoice_id is not None:
                r.billed_invoice_id, r.billed_at = invoice_id, now
                n += 1
        return n


# --- a customer's state (the API) -------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerState:
    customer: str
    policy: StoredPolicy | None  # the one that applies: the customer's own, else the tenant's default
    source: str | None  # "customer", "tenant" or None (no dunning)
    suspended_for: list[str]  # invoices the customer is suspended for by dunning (not reactivated yet)
    log: list[LogEntry]
    charges: list[Charge]


def customer_state(sf: sessionmaker, tenant: str, customer: str) -> CustomerState:
    """The customer's dunning: its policy and where it comes from, the steps done, the late fees (pending or
    billed) and whether it is suspended. NotFound for a customer the tenant does not have."""
    with sf() as s:
        if find_customer_row(s, tenant, customer) is None:
            raise NotFound(f"customer {customer!r}")
        rows = {r.customer: r for r in s.scalars(select(DunningPolicyRow).where(
            DunningPolicyRow.tenant == tenant, DunningPolicyRow.customer.in_((customer, TENANT_DEFAULT))))}  # fmt: skip
        row, source = (rows[customer], "customer") if customer in rows else (rows.get(TENANT_DEFAULT), "tenant")
        suspended = open_suspensions(s, tenant, customer).get((tenant, customer), [])
    return CustomerState(customer, _stored(row) if row is not None else None, source if row is not None else None,
                         suspended, list_log(sf, tenant, customer), list_charges(sf, tenant, customer))  # fmt: skip
