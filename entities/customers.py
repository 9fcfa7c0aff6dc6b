"""Customers: one table for every API (own /v1, OpenMeter, Lago): model + repositories.

Billing (issue #14) knows a customer by its external id (`CustomerDoc.external_id`): the OpenMeter
customer's `key`, or its id when it has no key (the `customer` of its usage events). `put_customer`,
`get_customer_doc`, `list_customer_docs` and `delete_customer` work on `schemas.entities.CustomerDoc`
with optimistic locking (`version`), and every change (including an OpenMeter create) is appended to
the entity outbox in the same transaction (entities/outbox.py).

A customer has an id (ULID), an optional unique `key`, a name, currency, metadata and its *usage
attribution*: the subject keys whose events it pays for (a subject belongs to at most one customer).
Meterstream's `customer` of those events (the Kafka key, the catalog's assignment, the invoice) is the
customer's key when it has one, else its id (`Customer.meterstream_id`); a subject no customer
claims is billed as its own customer (ingest/translate.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    and_,
    delete,
    false,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from meterstream.entities import outbox
from meterstream.entities.common import Conflict, Invalid, NotFound, aware, new_ulid
from meterstream.entities.db import Base
from meterstream.entities.plan_rules import check_text, validate_customer
from meterstream.schemas.entities import Address, CustomerDoc
from meterstream.webhooks import events


class CustomerRow(Base):
    __tablename__ = "customers"
    __table_args__ = (
        Index(
            "uq_customers_tenant_key_active",
            "tenant",
            "key",
            unique=True,
            sqlite_where=text("deleted_at IS NULL AND key IS NOT NULL"),
            postgresql_where=text("deleted_at IS NULL AND key IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    key: Mapped[str | None] = mapped_column(String(256), nullable=True)
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    primary_email: Mapped[str | None] = mapped_column(String(256), nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # billing details (migration 0004)
    legal_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    tax_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    address: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    invoice_grace_days: Mapped[int] = mapped_column(Integer, default=0)
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)


class CustomerSubjectRow(Base):
    """Usage attribution: subject key -> the customer that pays for its events."""

    __tablename__ = "customer_subjects"
    __table_args__ = (UniqueConstraint("tenant", "subject_key", name="uq_customer_subjects_tenant_subject"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    subject_key: Mapped[str] = mapped_column(String(256))
    customer_id: Mapped[str] = mapped_column(String(26), ForeignKey("customers.id", ondelete="CASCADE"), index=True)


@dataclass(frozen=True)
class Customer:
    id: str
    tenant: str
    key: str | None
    name: str
    subject_keys: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    primary_email: str | None = None
    currency: str | None = None
    metadata: dict[str, Any] | None = None
    deleted_at: datetime | None = None
    version: int = 1
    billing_address: Address | None = None
    timezone: str = "UTC"

    @property
    def meterstream_id(self) -> str:
        """The `customer` of this customer's usage events: its key, else its id."""
        return self.key or self.id


@dataclass(frozen=True)
class CustomerCreate:
    name: str
    key: str | None = None
    subject_keys: tuple[str, ...] = ()
    description: str | None = None
    primary_email: str | None = None
    currency: str | None = None
    metadata: dict[str, Any] | None = None
    billing_address: Address | None = None
    timezone: str | None = None  # None: UTC on create, unchanged on update


def _customer(row: CustomerRow, subjects: Iterable[str]) -> Customer:
    return Customer(
        id=row.id, tenant=row.tenant, key=row.key, name=row.name, subject_keys=tuple(sorted(subjects)),
        created_at=aware(row.created_at), updated_at=aware(row.updated_at), description=row.description,
        primary_email=row.primary_email, currency=row.currency, metadata=row.meta, deleted_at=aware(row.deleted_at),
        version=row.version or 1, billing_address=msgspec.convert(row.address, Address) if row.address else None,
        timezone=row.timezone or "UTC",
    )  # fmt: skip


def _string_metadata(meta: dict[str, Any] | None) -> dict[str, str]:
    """Metadata as the document carries it: strings to strings (other JSON values as JSON text)."""
    return {str(k): v if isinstance(v, str) else msgspec.json.encode(v).decode() for k, v in (meta or {}).items()}


def check_customer(doc: CustomerDoc) -> None:
    """Every rule of a customer document (`Invalid` naming the field): plan_rules.validate_customer plus the
    fields OpenMeter brought (description, address.phone_number)."""
    validate_customer(doc)
    check_text("description", doc.description, max_len=1024, required=False)
    if doc.address is not None:
        check_text("address.phone_number", doc.address.phone_number, max_len=64, required=False)


def _claim_subjects(s: Session, tenant: str, customer_id: str, subjects: Sequence[str]) -> None:
    """Make `subjects` exactly the customer's usage attribution. A subject another active customer claims is
    a `Conflict` naming usageAttribution.subjectKeys; one left behind by a deleted customer is taken over."""
    if subjects:
        claimed = s.execute(
            select(CustomerSubjectRow.id, CustomerSubjectRow.subject_key, CustomerSubjectRow.customer_id,
                   CustomerRow.deleted_at)
            .join(CustomerRow, CustomerRow.id == CustomerSubjectRow.customer_id)
            .where(CustomerSubjectRow.tenant == tenant, CustomerSubjectRow.subject_key.in_(subjects))
        ).all()  # fmt: skip
        for _id, key, owner, deleted_at in claimed:
            if owner != customer_id and deleted_at is None:
                raise Conflict(
                    "usageAttribution.subjectKeys", f"subject {key!r} is already attributed to customer {owner}"
                )
        stale = [
            row_id for row_id, _key, owner, deleted_at in claimed if owner != customer_id and deleted_at is not None
        ]
        if stale:
            s.execute(delete(CustomerSubjectRow).where(CustomerSubjectRow.id.in_(stale)))
    own = set(s.scalars(select(CustomerSubjectRow.subject_key).where(CustomerSubjectRow.customer_id == customer_id)))
    gone = own - set(subjects)
    if gone:
        s.execute(
            delete(CustomerSubjectRow).where(
                CustomerSubjectRow.customer_id == customer_id, CustomerSubjectRow.subject_key.in_(gone)
            )
        )
    for key in subjects:
        if key not in own:
            s.add(CustomerSubjectRow(tenant=tenant, subject_key=key, customer_id=customer_id))
    s.flush()


class CustomerRepository:
    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def create(self, tenant: str, new: CustomerCreate) -> Customer:
        """Store a customer; ValueError (field: reason) for bad input, `Conflict` for a taken key or subject."""
        if not new.name or len(new.name) > 256:
            raise ValueError("name: 1-256 characters")
        if new.key is not None and not (0 < len(new.key) <= 256):
            raise ValueError("key: 1-256 characters")
        if new.currency is not None and not (len(new.currency) == 3 and new.currency.isalpha()):
            raise ValueError("currency: an ISO 4217 code such as USD")
        subjects = _subject_list(new.subject_keys)
        now = datetime.now(UTC)
        row = CustomerRow(
            id=new_ulid(), tenant=tenant, key=new.key, name=new.name, description=new.description,
            primary_email=new.primary_email, currency=new.currency.upper() if new.currency else None,
            meta=new.metadata, created_at=now, updated_at=now, deleted_at=None,
            address=msgspec.to_builtins(new.billing_address) if new.billing_address is not None else None,
            timezone=new.timezone or "UTC", invoice_grace_days=0, payment_terms_days=0,
        )  # fmt: skip
        check_customer(customer_doc(row))
        with self._sessions.begin() as s:
            outbox.begin_write(s)
            if new.key is not None:
                taken = s.scalar(
                    select(CustomerRow.id).where(
                        CustomerRow.tenant == tenant, CustomerRow.key == new.key, CustomerRow.deleted_at.is_(None)
                    )
                )
                if taken is not None:
                    raise Conflict("key", f"a customer with key {new.key!r} already exists")
            row.version = _first_version(s, tenant, new.key)
            s.add(row)
            s.flush()
            _claim_subjects(s, tenant, row.id, subjects)
            _changed(s, customer_doc(row), events.CUSTOMER_CREATED)
        return _customer(row, subjects)

    def replace(
        self, tenant: str, id_or_key: str, new: CustomerCreate, *, subject_keys: Sequence[str] | None,
        expected_version: int | None = None,
    ) -> Customer:  # fmt: skip
        """OpenMeter's PUT: replace the fields OpenMeter has (name, description, primaryEmail, currency,
        billingAddress, metadata; timezone when given) and, when `subject_keys` is given, the usage attribution;
        the billing details only the other APIs set (legal name, tax id, country, grace and payment days) stay.
        The key is the customer's external id (its usage events' `customer`, its subscriptions): a different
        key is `Invalid` naming `key`. Bumps the version like every change (a stale `expected_version` is a
        `Conflict` naming `version`); an identical replace writes nothing."""
        subjects = _subject_list(subject_keys) if subject_keys is not None else None
        with self._sessions.begin() as s:
            outbox.begin_write(s)
            base = select(CustomerRow).where(CustomerRow.tenant == tenant, CustomerRow.deleted_at.is_(None))
            row = s.scalar(base.where(CustomerRow.id == id_or_key).with_for_update())
            row = row or s.scalar(base.where(CustomerRow.key == id_or_key).with_for_update())
            if row is None:
                raise NotFound(f"customer {id_or_key!r} not found")
            _check_version(expected_version, row.version, row.key or row.id)
            if new.key is not None and new.key != row.key:
                raise Invalid("key", f"cannot change ({row.key or 'none'} -> {new.key}): the key is the customer's "
                              "external id, the `customer` of its usage events and subscriptions")  # fmt: skip
            current = customer_doc(row)
            doc = msgspec.structs.replace(
                current, name=new.name, description=new.description, email=new.primary_email,
                currency=new.currency.upper() if new.currency else None, address=new.billing_address,
                timezone=new.timezone or current.timezone, metadata=_string_metadata(new.metadata),
            )  # fmt: skip
            check_customer(doc)
            own = set(s.scalars(select(CustomerSubjectRow.subject_key).where(CustomerSubjectRow.customer_id == row.id)))
            same_subjects = subjects is None or set(subjects) == own
            if doc == current and (new.metadata or None) == (row.meta or None) and same_subjects:
                return _customer(row, own)
            if doc.currency is not None and doc.currency != row.currency:
                _check_currency_change(s, doc)
            if subjects is not None:
                _claim_subjects(s, tenant, row.id, subjects)
            _write(row, doc, datetime.now(UTC))
            row.meta = new.metadata or None  # as OpenMeter sent it (JSON values kept)
            s.flush()
            _changed(s, customer_doc(row), events.CUSTOMER_UPDATED)
            return _customer(row, subjects if subjects is not None else own)

    def _subjects(self, s: Any, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {i: [] for i in ids}
        if ids:
            stmt = select(CustomerSubjectRow.customer_id, CustomerSubjectRow.subject_key).where(
                CustomerSubjectRow.customer_id.in_(ids)
            )
            for cid, key in s.execute(stmt):
                out[cid].append(key)
        return out

    def get(self, tenant: str, id_or_key: str) -> Customer:
        with self._sessions() as s:
            base = select(CustomerRow).where(CustomerRow.tenant == tenant, CustomerRow.deleted_at.is_(None))
            row = s.scalar(base.where(CustomerRow.id == id_or_key))
            row = row or s.scalar(base.where(CustomerRow.key == id_or_key))
            if row is None:
                raise NotFound(f"customer {id_or_key!r} not found")
            return _customer(row, self._subjects(s, [row.id])[row.id])

    def list(
        self,
        tenant: str,
        *,
        page: int = 1,
        page_size: int = 100,
        key: str | None = None,
        name: str | None = None,
        subject: str | None = None,
        primary_email: str | None = None,
        include_deleted: bool = False,
    ) -> tuple[list[Customer], int]:
        """One page (1-based) of customers, oldest first, and the total count matching the filters."""
        where: list[Any] = [CustomerRow.tenant == tenant]
        if not include_deleted:
            where.append(CustomerRow.deleted_at.is_(None))
        if key is not None:
            where.append(CustomerRow.key == key)
        if name is not None:
            where.append(CustomerRow.name.contains(name, autoescape=True))
        if primary_email is not None:
            where.append(CustomerRow.primary_email == primary_email)
        if subject is not None:
            owners = select(CustomerSubjectRow.customer_id).where(
                CustomerSubjectRow.tenant == tenant, CustomerSubjectRow.subject_key == subject
            )
            where.append(CustomerRow.id.in_(owners))
        with self._sessions() as s:
            total = s.scalar(select(func.count()).select_from(CustomerRow).where(*where)) or 0
            rows = list(
                s.scalars(
                    select(CustomerRow)
                    .where(*where)
                    .order_by(CustomerRow.created_at, CustomerRow.id)
                    .offset((page - 1) * page_size)
                    .limit(page_size)
                )
            )
            subjects = self._subjects(s, [r.id for r in rows])
            return [_customer(r, subjects[r.id]) for r in rows], total

    def subject_customers(self, tenant: str, subjects: Iterable[str]) -> dict[str, str]:
        """subject key -> Meterstream customer (key, else id) for the given subjects that a customer claims."""
        keys = sorted(set(subjects))
        if not keys:
            return {}
        stmt = (
            select(CustomerSubjectRow.subject_key, CustomerRow.key, CustomerRow.id)
            .join(CustomerRow, CustomerRow.id == CustomerSubjectRow.customer_id)
            .where(
                CustomerSubjectRow.tenant == tenant,
                CustomerSubjectRow.subject_key.in_(keys),
                CustomerRow.deleted_at.is_(None),
            )
        )
        with self._sessions() as s:
            return {subject: key or cid for subject, key, cid in s.execute(stmt)}

    def by_meterstream_ids(self, tenant: str, ids: Iterable[str]) -> dict[str, Customer]:
        """Meterstream customer id (key or id) -> customer, for the ids that are OpenMeter customers."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        with self._sessions() as s:
            rows = list(
                s.scalars(
                    select(CustomerRow).where(
                        CustomerRow.tenant == tenant,
                        CustomerRow.deleted_at.is_(None),
                        or_(CustomerRow.key.in_(wanted), CustomerRow.id.in_(wanted)),
                    )
                )
            )
            subjects = self._subjects(s, [r.id for r in rows])
            out = {}
            for r in rows:
                c = _customer(r, subjects[r.id])
                out[c.meterstream_id] = c
            return out


# --- billing customers (CustomerDoc) ------------------------------------------------------------------


def _subject_list(keys: Iterable[str]) -> list[str]:
    subjects = list(dict.fromkeys(keys))
    for key in subjects:
        if not isinstance(key, str) or not (0 < len(key) <= 256):
            raise Invalid("usageAttribution.subjectKeys", "each 1-256 characters")
    return subjects


def customer_doc(row: CustomerRow) -> CustomerDoc:
    """The document of a stored customer; external_id is its key, else its id."""
    meta = _string_metadata(row.meta)
    return CustomerDoc(
        tenant=row.tenant, external_id=row.key or row.id, name=row.name, version=row.version or 1,
        legal_name=row.legal_name, email=row.primary_email, tax_id=row.tax_id, country=row.country,
        address=msgspec.convert(row.address, Address) if row.address else None, currency=row.currency,
        timezone=row.timezone or "UTC", invoice_grace_days=row.invoice_grace_days or 0,
        payment_terms_days=row.payment_terms_days or 0, metadata=meta, deleted=row.deleted_at is not None,
        description=row.description,
    )  # fmt: skip


def _active(tenant: str, external_id: str) -> Any:
    """The active customer whose external id is `external_id` (its key, or its id when it has no key)."""
    return select(CustomerRow).where(
        CustomerRow.tenant == tenant,
        CustomerRow.deleted_at.is_(None),
        or_(CustomerRow.key == external_id, and_(CustomerRow.key.is_(None), CustomerRow.id == external_id)),
    )


def find_customer_row(s: Session, tenant: str, external_id: str, *, lock: bool = False) -> CustomerRow | None:
    stmt = _active(tenant, external_id)
    return s.scalar(stmt.with_for_update() if lock else stmt)


def _first_version(s: Session, tenant: str, key: str | None) -> int:
    """The version of a new customer: 1, or one more than a deleted customer's with the same external id, so
    a consumer keeping the highest version per key (the compacted topic) sees the new one over the deletion."""
    if key is None:
        return 1
    newest = s.scalar(select(func.max(CustomerRow.version)).where(CustomerRow.tenant == tenant, CustomerRow.key == key))
    return (newest or 0) + 1


def _check_version(expected: int | None, current: int, external_id: str) -> None:
    if expected is not None and expected != current:
        state = f"is at version {current}" if current else "does not exist"
        raise Conflict("version", f"customer {external_id!r} {state}, not {expected}: reload it and retry")


def _same(doc: CustomerDoc, row: CustomerRow) -> bool:
    current = customer_doc(row)
    return msgspec.structs.replace(doc, version=current.version) == current


def _check_currency_change(s: Session, doc: CustomerDoc) -> None:
    """A customer's currency may not change away from the plans of its subscriptions that have not ended."""
    from meterstream.entities.plans import find_plan_row
    from meterstream.entities.subscriptions import running_phases

    for external_id, code, version in running_phases(s, doc.tenant, doc.external_id, datetime.now(UTC)):
        plan = find_plan_row(s, doc.tenant, code, version, include_deleted=True)
        if plan is not None and plan.currency != doc.currency:
            raise Conflict(
                "currency",
                f"subscription {external_id!r} is on plan {code}@{version} in {plan.currency}: "
                f"end it before changing the customer's currency to {doc.currency}",
            )


def _changed(s: Session, doc: CustomerDoc, type: str) -> None:
    """A stored change of a customer: on the entities topic (outbox) and as a webhook event, in its transaction."""
    outbox.append(s, [doc])
    events.customer_event(s, doc, type)


def _write(row: CustomerRow, doc: CustomerDoc, now: datetime) -> None:
    """The document's fields onto the row, version + 1."""
    row.name, row.legal_name, row.primary_email, row.tax_id = doc.name, doc.legal_name, doc.email, doc.tax_id
    row.country, row.currency, row.timezone = doc.country, doc.currency, doc.timezone
    row.address = msgspec.to_builtins(doc.address) if doc.address is not None else None
    row.invoice_grace_days, row.payment_terms_days = doc.invoice_grace_days, doc.payment_terms_days
    row.meta = dict(doc.metadata) or None
    row.description = doc.description
    row.version = (row.version or 0) + 1
    row.updated_at = now


def put_customer(sf: sessionmaker, doc: CustomerDoc, expected_version: int | None = None) -> CustomerDoc:
    """Create or update the customer (tenant, external_id); returns the stored document.

    `doc.version` is ignored; the stored version is the previous one + 1 (1 on create). With
    `expected_version`, a customer at another version (0: absent) raises `Conflict` naming `version`.
    A document identical to the stored one writes nothing and returns it unchanged (idempotent apply).
    Bad input raises `Invalid`; nothing is written.
    """
    check_customer(doc)
    now = datetime.now(UTC)
    with sf.begin() as s:
        outbox.begin_write(s)
        row = find_customer_row(s, doc.tenant, doc.external_id, lock=True)
        _check_version(expected_version, row.version if row is not None else 0, doc.external_id)
        if row is not None and _same(doc, row):
            return customer_doc(row)
        if row is not None and doc.currency is not None and doc.currency != row.currency:
            _check_currency_change(s, doc)
        created = row is None
        if row is None:
            first = _first_version(s, doc.tenant, doc.external_id)
            row = CustomerRow(id=new_ulid(), tenant=doc.tenant, key=doc.external_id, created_at=now, version=first - 1)
            s.add(row)
        _write(row, doc, now)
        s.flush()
        stored = customer_doc(row)
        _changed(s, stored, events.CUSTOMER_CREATED if created else events.CUSTOMER_UPDATED)
        return stored


def get_customer_doc(sf: sessionmaker, tenant: str, external_id: str) -> CustomerDoc:
    with sf() as s:
        row = find_customer_row(s, tenant, external_id)
        if row is None:
            raise NotFound(f"customer {external_id!r} not found")
        return customer_doc(row)


def list_customer_docs(sf: sessionmaker, tenant: str, limit: int = 100, offset: int = 0) -> list[CustomerDoc]:
    """Active customers of the tenant, oldest first."""
    stmt = (
        select(CustomerRow)
        .where(CustomerRow.tenant == tenant, CustomerRow.deleted_at.is_(None))
        .order_by(CustomerRow.created_at, CustomerRow.id)
        .offset(max(offset, 0))
        .limit(max(limit, 0))
    )
    with sf() as s:
        return [customer_doc(r) for r in s.scalars(stmt)]


@dataclass(frozen=True)
class CustomerFilter:
    """Ways to narrow `customer_page` (None: no condition; several conditions: all of them). `search`: text found
    (case aside, its % _ \\ taken literally) in the name, external id, email or legal name; `external_id` exactly;
    `countries`, `currencies` (upper-case codes), `states`, `zipcodes` (the address's state and postal code, exact):
    one of the values; `has_tax_id`: a tax id set or not; `tax_id` exactly; `metadata`: (key, value) pairs the
    customer's metadata holds (value "": the key absent); `nothing`: no customer matches (a filter on something
    Meterstream's customers never are, such as Lago's `account_type[]=partner`)."""

    search: str | None = None
    external_id: str | None = None
    countries: tuple[str, ...] | None = None
    states: tuple[str, ...] | None = None
    zipcodes: tuple[str, ...] | None = None
    currencies: tuple[str, ...] | None = None
    has_tax_id: bool | None = None
    tax_id: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    nothing: bool = False


def like_pattern(text: str) -> str:
    """`text` as a LIKE pattern that matches it anywhere, its own % _ and \\ taken literally (both list searches)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _customer_conditions(f: CustomerFilter) -> list[Any]:
    """The SQL conditions of a filter (on the customers table)."""
    if f.nothing:
        return [false()]
    where: list[Any] = []
    external_id = func.coalesce(CustomerRow.key, CustomerRow.id)  # customer_doc: the key, else the id
    if f.search is not None:
        pattern = like_pattern(f.search)
        where.append(or_(*(column.ilike(pattern, escape="\\") for column in (
            CustomerRow.name, external_id, CustomerRow.primary_email, CustomerRow.legal_name))))  # fmt: skip
    if f.external_id is not None:
        where.append(external_id == f.external_id)
    if f.countries is not None:
        where.append(CustomerRow.country.in_(f.countries))
    if f.currencies is not None:
        where.append(CustomerRow.currency.in_(f.currencies))
    if f.states is not None:
        where.append(CustomerRow.address["state"].as_string().in_(f.states))
    if f.zipcodes is not None:
        where.append(CustomerRow.address["postal_code"].as_string().in_(f.zipcodes))
    if f.has_tax_id is not None:
        where.append(CustomerRow.tax_id.is_not(None) if f.has_tax_id else CustomerRow.tax_id.is_(None))
    if f.tax_id is not None:
        where.append(CustomerRow.tax_id == f.tax_id)
    for key, value in f.metadata:
        # SQLite's JSON paths match a key as the JSON text stores it (non-ASCII escaped: "\\u00e9"), PostgreSQL's
        # as it reads: both spellings asked (a key with a backslash of its own is refused by the API)
        held = [CustomerRow.meta[path].as_string() for path in dict.fromkeys((key, json.dumps(key)[1:-1]))]
        where.append(or_(*(h == value for h in held)) if value else and_(*(h.is_(None) for h in held)))
    return where


def customer_page(
    sf: sessionmaker, tenant: str, page: int, per_page: int, where: CustomerFilter | None = None
) -> tuple[list[tuple[CustomerDoc, datetime, datetime]], int]:
    """One page (1-based) of the tenant's active customers (those matching `where` when given), oldest first, each
    with its creation and last change, and how many there are."""
    active = (CustomerRow.tenant == tenant, CustomerRow.deleted_at.is_(None),
              *(_customer_conditions(where) if where is not None else ()))  # fmt: skip
    stmt = (select(CustomerRow).where(*active).order_by(CustomerRow.created_at, CustomerRow.id)
            .offset((page - 1) * per_page).limit(per_page))  # fmt: skip
    with sf() as s:
        total = int(s.scalar(select(func.count()).select_from(CustomerRow).where(*active)) or 0)
        rows = [(customer_doc(r), aware(r.created_at), aware(r.updated_at)) for r in s.scalars(stmt)]
    return rows, total  # type: ignore[return-value]


def delete_customer(
    sf: sessionmaker, tenant: str, external_id: str, expected_version: int | None = None
) -> CustomerDoc:
    """Soft-delete a customer (its document goes to the outbox with deleted=True); `Conflict` naming
    `external_id` while one of its subscriptions has a phase that has not ended."""
    from meterstream.entities.subscriptions import subscriptions_in_use

    now = datetime.now(UTC)
    with sf.begin() as s:
        outbox.begin_write(s)
        row = find_customer_row(s, tenant, external_id, lock=True)
        if row is None:
            raise NotFound(f"customer {external_id!r} not found")
        _check_version(expected_version, row.version, external_id)
        using = subscriptions_in_use(s, tenant, now, customer=external_id)
        if using:
            raise Conflict(
                "external_id", f"customer {external_id!r} has subscriptions that have not ended: {', '.join(using)}"
            )
        row.deleted_at, row.updated_at, row.version = now, now, row.version + 1
        s.execute(delete(CustomerSubjectRow).where(CustomerSubjectRow.customer_id == row.id))  # subjects freed
        s.flush()
        stored = customer_doc(row)
        _changed(s, stored, events.CUSTOMER_DELETED)
        return stored
