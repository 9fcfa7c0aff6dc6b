"""The close's invoices as records of the entity store: each draft finalized with its gapless number
(entities/invoices.py), one transaction per customer (docs/billing.md, "What the close writes").

`Recorder.finalize(draft)` upserts the draft and finalizes it in ONE transaction: the number of (tenant,
issuer prefix, series `INV`, year of the issue date) is allocated in it, so a failure leaves neither the
record nor a used number. An invoice the store already holds as issued (finalized, paid, overdue, voided...:
a close that stopped after recording it, or a re-run) is never changed: its stored document comes back as it
is, with its number, so re-running a close gives the same numbered documents and uses no new number.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from meterstream.entities.invoices import DRAFT, InvoiceRow, finalize_in, upsert_draft_in
from meterstream.invoice_emitter.issue import Issuing
from meterstream.schemas.invoice import InvoiceDoc, decode, encode, validate

__all__ = ["Recorder"]


class Recorder:
    """Finalizes the close's drafts in the entity store `sf` under `issuing`'s prefix and series."""

    def __init__(self, sf: sessionmaker, issuing: Issuing) -> None:
        self.sf = sf
        self.issuing = issuing

    def finalize(self, draft: InvoiceDoc) -> InvoiceDoc:
        """The finalized, numbered document of `draft` (the stored one when it was issued before)."""
        with self.sf.begin() as s:
            stored = s.execute(
                select(InvoiceRow.status, InvoiceRow.document).where(
                    InvoiceRow.tenant == draft.tenant, InvoiceRow.invoice_id == draft.id
                )
            ).first()
            if stored is not None and stored.status != DRAFT:
                return decode(stored.document)
            final: list[InvoiceDoc] = []

            def stamp(_document: str, number: str) -> str:
                doc = validate(msgspec.structs.replace(draft, number=number, status="finalized"))
                final.append(doc)
                return encode(doc).decode()

            upsert_draft_in(
                s, tenant=draft.tenant, invoice_id=draft.id, customer=draft.customer, period=draft.period,
                currency=draft.currency, total=draft.total, amount_due=draft.amount_due,
                issue_date=draft.issue_date, due_date=draft.due_date, document=encode(draft),
            )  # fmt: skip
            record = finalize_in(s, draft.tenant, draft.id, self.issuing.prefix, self.issuing.series,
                                 datetime.now(UTC), stamp=stamp)  # fmt: skip
            if not final:  # finalized by someone else between the read and the lock: theirs stands
                return decode(record.document)
            return final[0]
