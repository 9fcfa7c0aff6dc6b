"""Which (tenant, customer, period) are closed: the truth is the invoice store's issued records.

A period label is closed for a customer once the customer's invoice for it is issued: its record in the entity
store (entities/invoices.py) has any status but `draft` (finalized, paid, overdue, voided...). A close of one
customer (`close_period(customers=...)`) finalizes only that record; a close of the whole period finalizes
every other customer's and then marks the period in ClickHouse `period_closes`, which therefore means "every
customer of the period is closed". So for a label L:

- L in `period_closes`: closed for everyone (its late usage is billed as adjustments on later invoices);
- else: closed for exactly the customers with an issued record of L (`issued_documents`), open for the others
  (their usage of L is billed by L's own close, and kept current in their drafts meanwhile).

`earlier_closed` combines both for the close of a later label: which earlier labels have late usage to adjust,
and for whom. Reads only.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from meterstream.entities.invoices import DRAFT, InvoiceRow

Key = tuple[str, str]


def issued_documents(sf: sessionmaker, period: str, only: set[Key] | None = None) -> dict[Key, dict[str, Any]]:
    """(tenant, customer) -> the stored document of each issued (not draft) invoice of label `period`
    (`only`: of these customers alone)."""
    stmt = select(InvoiceRow.tenant, InvoiceRow.customer, InvoiceRow.document).where(
        InvoiceRow.period == period, InvoiceRow.status != DRAFT
    )
    if only is not None and len(only) <= 500:
        stmt = stmt.where(InvoiceRow.customer.in_(sorted({c for _, c in only})))
    with sf() as s:
        rows = s.execute(stmt).all()
    return {
        (t, c): orjson.loads(doc) for t, c, doc in rows if only is None or (t, c) in only
    }  # fmt: skip


def issued_keys(sf: sessionmaker, period: str) -> set[Key]:
    """The customers whose invoice of label `period` is issued."""
    stmt = select(InvoiceRow.tenant, InvoiceRow.customer).where(InvoiceRow.period == period, InvoiceRow.status != DRAFT)
    with sf() as s:
        return {(t, c) for t, c in s.execute(stmt)}


def earlier_closed(sf: sessionmaker, wide: list[str], period: str) -> tuple[list[str], dict[str, set[Key]]]:
    """The labels before `period` that are closed for someone, sorted, and for those not closed for everyone
    (not in `wide`, the `period_closes` labels) the customers they are closed for."""
    labels = {p for p in wide if p < period}
    stmt = select(InvoiceRow.period, InvoiceRow.tenant, InvoiceRow.customer).where(
        InvoiceRow.period < period, InvoiceRow.status != DRAFT
    )
    if labels:
        stmt = stmt.where(InvoiceRow.period.not_in(sorted(labels)))
    partial: dict[str, set[Key]] = {}
    with sf() as s:
        for label, tenant, customer in s.execute(stmt.distinct()):
            partial.setdefault(label, set()).add((tenant, customer))
    return sorted(labels | set(partial)), partial


def closed_for(label: str, key: Key, partial: dict[str, set[Key]]) -> bool:
    """Whether an earlier closed `label` (from `earlier_closed`) is closed for `key`."""
    members = partial.get(label)
    return members is None or key in members


__all__ = ["closed_for", "earlier_closed", "issued_documents", "issued_keys"]
