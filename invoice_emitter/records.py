"""The close's invoices as records of the entity store: each draft finalized with its gapless number
(entities/invoices.py), the number allocated in the transaction that stores the record (docs/billing.md, "What
the close writes").

`Recorder.finalize(draft)` is one customer in one transaction through the store's own functions: upsert the
draft, then finalize it (`upsert_draft_in`, `finalize_in`): a failure leaves neither the record nor a used
number. `Recorder.finalize_many(drafts)` does the same for a batch of customers in one transaction, in bulk
statements — what a close of thousands of customers needs (the per-record path costs ~35 ms of CPU per
invoice in the ORM: ~30 invoices/s). The bulk path writes what the per-record path writes, with the store's
rules: one block of numbers per (tenant, year) taken from the counter row (`entities/numbering.py`:
`last = last + n`, in the transaction, so a rollback gives them back), the records already finalized
(`settled_status`: a 0.00 invoice is paid at once) and the lifecycle events `invoice.created`,
`invoice.finalized` (and `invoice.paid` for a zero invoice) in `webhook_outbox`, in that order. A draft the
store already holds as a draft (kept current by `drafts.py` or the API) is finalized in bulk too, as the
per-record path does it (`upsert_draft_in` then `finalize_in`): its row, locked, is updated in place by primary
key (one executemany: document, amounts, dates, number, status, version + 2), with the events that path writes
(`invoice.finalized`, then `invoice.paid` for a zero invoice; replacing a draft is no event), and it is refused
as that path refuses it (another customer or currency: `Conflict`; bad fields: `Invalid`, same messages).
Numbers go to new and stored drafts alike, in the order given. If a bulk statement fails (a concurrent close
inserted the same invoice) or a stored draft stopped being a draft under the batch, the batch is rolled back
and each draft is finalized on its own.

Either way, an invoice the store already holds as issued (finalized, paid, overdue, voided...: a close that
stopped after recording it, or a re-run) is never changed: its stored document comes back as it is, with its
number, so re-running a close gives the same numbered documents and uses no new number.
"""

from __future__ import annotations

import os
from base64 import b32encode
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from operator import itemgetter
from types import SimpleNamespace
from typing import Any

import msgspec
import orjson
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from meterstream.entities import numbering
from meterstream.entities.common import Conflict, Invalid, new_ulid
from meterstream.entities.invoice_rules import (
    amount_due,
    check_currency,
    check_day,
    settled_status,
    text,
    to_minor,
)
from meterstream.entities.invoices import DRAFT, FINALIZED, InvoiceRow, finalize_in, upsert_draft_in
from meterstream.invoice_emitter.issue import Issuing
from meterstream.schemas.invoice import InvoiceDoc, decode, encode, validate
from meterstream.webhooks import events

__all__ = ["EncodedDraft", "Recorder"]


class _Head(msgspec.Struct, frozen=True):
    """The fields of a draft the store reads (the rest of its JSON is skipped when decoding)."""

    id: str
    number: str | None
    status: str
    tenant: str
    customer: str
    period: str
    currency: str
    total: Decimal
    amount_due: Decimal
    issue_date: date | None = None
    due_date: date | None = None


_decode_head = msgspec.json.Decoder(_Head).decode
_DRAFT_MARK = b',"number":null,"status":"draft",'  # right after the id: InvoiceDoc's field order


class EncodedDraft:
    """A validated draft as its JSON (`schemas.invoice.encode`), made elsewhere (a close's worker process,
    `close.py`), with the fields the store reads: `finalize_many` numbers it without decoding the whole document;
    its finalized JSON is the draft's with the number and status put in (what `encode` of the finalized document
    gives, byte for byte: the two fields come right after the id, and the text `,"number":null` cannot occur
    inside a JSON string, whose quotes are escaped). `doc()`: the whole document (the per-record path's)."""

    __slots__ = ("data", "head")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.head = head = _decode_head(data)
        if head.status != DRAFT or head.number is not None or data.find(_DRAFT_MARK) < 0:
            raise ValueError(f"draft {head.id!r}: not a draft without a number ({head.status}, {head.number!r})")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.head, name)

    def doc(self) -> InvoiceDoc:
        return decode(self.data)

    def finalized(self, number: str) -> bytes:
        """The finalized document's JSON: `encode(replace(doc, number=number, status="finalized"))`."""
        data = self.data
        at = data.find(_DRAFT_MARK)
        return b"".join((data[:at], b',"number":', encode_text(number), b',"status":"finalized",',
                         data[at + len(_DRAFT_MARK) :]))  # fmt: skip


class EncodedFinal:
    """A document `finalize_many` finalized from an `EncodedDraft`: its JSON (`data`) and the store's fields
    (`head`, with the number). `doc()` decodes the whole document."""

    __slots__ = ("data", "head")

    def __init__(self, data: bytes, head: _Head) -> None:
        self.data = data
        self.head = head

    def __getattr__(self, name: str) -> Any:
        return getattr(self.head, name)

    def doc(self) -> InvoiceDoc:
        return decode(self.data)


def encode_text(value: str) -> bytes:
    return _text_encoder.encode(value)


_text_encoder = msgspec.json.Encoder()


class Recorder:
    """Finalizes the close's drafts in the entity store `sf` under `issuing`'s prefix and series."""

    def __init__(self, sf: sessionmaker, issuing: Issuing) -> None:
        self.sf = sf
        self.issuing = issuing
        # the compact JSON (`encode`) of the documents the last `finalize_many` returned, by id(): the close hands
        # it on to ClickHouse instead of encoding the same document again (the document is kept with its bytes,
        # so an id() cannot be reused while its entry exists)
        self.encoded: dict[int, tuple[InvoiceDoc, bytes]] = {}
        self._pending: dict[int, tuple[InvoiceDoc, bytes]] = {}
        numbering.check_code("issuer", issuing.prefix)
        numbering.check_code("series", issuing.series)

    # --- one invoice ----------------------------------------------------------------------------------

    def finalize(self, draft: InvoiceDoc) -> InvoiceDoc:
        """The finalized, numbered document of `draft` (the stored one when it was issued before)."""
        with self.sf.begin() as s:
            return self._finalize_in(s, draft)

    def _finalize_in(self, s: Session, draft: InvoiceDoc) -> InvoiceDoc:
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

    # --- drafts ---------------------------------------------------------------------------------------

    def upsert_drafts(self, drafts: Sequence[InvoiceDoc]) -> list[InvoiceDoc | ValueError]:
        """Store each draft as a draft record, without finalizing it (what `upsert_draft_in` does, in bulk): a new
        invoice is inserted with its `invoice.created` event; a stored draft is replaced (no event); an invoice
        the store holds as issued is never changed (`Conflict("status")`), nor is a draft of another customer or
        currency (`Conflict`). Returns each draft as stored (or the ValueError that refused it), in the order
        given; one transaction for the batch (the stored rows locked: a close finalizing one meanwhile waits, or is
        waited for and then refuses it), and if a bulk statement fails or a stored draft stopped being a draft
        (a concurrent writer), one transaction per draft. Ids must be distinct."""
        self.encoded = {}
        if not drafts:
            return []
        try:
            with self.sf.begin() as s:
                return self._bulk_drafts(s, drafts)
        except (IntegrityError, DBAPIError, _Raced):
            out: list[InvoiceDoc | ValueError] = []
            for draft in drafts:
                try:
                    with self.sf.begin() as s:
                        out.append(self._upsert_draft_in(s, draft))
                except ValueError as exc:
                    out.append(exc)
            return out

    def _upsert_draft_in(self, s: Session, draft: InvoiceDoc) -> InvoiceDoc:
        _check_draft(draft)
        upsert_draft_in(
            s, tenant=draft.tenant, invoice_id=draft.id, customer=draft.customer, period=draft.period,
            currency=draft.currency, total=draft.total, amount_due=draft.amount_due,
            issue_date=draft.issue_date, due_date=draft.due_date, document=encode(draft),
        )  # fmt: skip
        return draft

    def _bulk_drafts(self, s: Session, drafts: Sequence[InvoiceDoc]) -> list[InvoiceDoc | ValueError]:
        numbering.lock_for_write(s)
        stored = {
            (row.tenant, row.invoice_id): row
            for row in _stored(s, drafts, InvoiceRow.status, InvoiceRow.customer, InvoiceRow.currency, lock=True)
        }
        now = datetime.now(UTC)
        out: list[InvoiceDoc | ValueError] = []
        rows: list[dict] = []
        updates: list[dict] = []
        event_rows: list[dict] = []
        for draft in drafts:
            try:
                _check_draft(draft)
                total, billed = _money(draft)
                found = stored.get((draft.tenant, draft.id))
                if found is not None:
                    if found.status != DRAFT:
                        raise Conflict("status", f"invoice {draft.id!r} is {found.status}: only a draft can be "
                                                 "replaced")  # fmt: skip
                    if found.customer != draft.customer:
                        raise Conflict("customer", f"draft {draft.id!r} belongs to customer {found.customer!r}, "
                                                   f"not {draft.customer!r}")  # fmt: skip
                    if found.currency != draft.currency:
                        raise Conflict("currency", f"draft {draft.id!r} is in {found.currency}, not {draft.currency}")
            except ValueError as exc:
                out.append(exc)
                continue
            document = encode(draft).decode()
            if found is None:
                row = _record_row(draft, DRAFT, total, billed, document, now)
                row.update(issuer=None, series=None, number=None, finalized_at=None, version=1)
                rows.append(row)
                event_rows.append(_event_row(row, events.INVOICE_CREATED, None, now))
            else:
                updates.append({"k_tenant": draft.tenant, "k_id": draft.id, "period": draft.period,
                                "total_minor": total, "billed_minor": billed, "amount_due_minor": billed,
                                "issue_date": draft.issue_date, "due_date": draft.due_date, "document": document,
                                "updated_at": now})  # fmt: skip
            out.append(draft)
        _insert(s, InvoiceRow.__table__, rows)
        if updates:  # only rows still drafts (locked above; counted where the driver reports it)
            table = InvoiceRow.__table__
            conn = s.connection()
            result = conn.execute(
                update(table)
                .where(table.c.tenant == bindparam("k_tenant"), table.c.invoice_id == bindparam("k_id"),
                       table.c.status == DRAFT)
                .values(period=bindparam("period"), total_minor=bindparam("total_minor"),
                        billed_minor=bindparam("billed_minor"), amount_due_minor=bindparam("amount_due_minor"),
                        issue_date=bindparam("issue_date"), due_date=bindparam("due_date"),
                        document=bindparam("document"), updated_at=bindparam("updated_at"),
                        version=table.c.version + 1),
                updates,
            )  # fmt: skip
            if conn.dialect.supports_sane_multi_rowcount and result.rowcount != len(updates):
                raise _Raced(f"{len(updates) - result.rowcount} stored drafts changed under the batch")
        _insert(s, events.WebhookOutboxRow.__table__, event_rows)
        return out

    # --- a batch --------------------------------------------------------------------------------------

    def finalize_many(self, drafts: Sequence[InvoiceDoc]) -> list[InvoiceDoc | ValueError]:
        """Each draft's finalized document (or the ValueError that refused it), in the order given; one
        transaction for the batch (module docstring). Ids must be distinct. A draft given as an `EncodedDraft`
        comes back as an `EncodedFinal` (its JSON numbered; the per-record fallback decodes it first)."""
        if not drafts:
            return []
        try:
            with self.sf.begin() as s:
                done = self._bulk(s, drafts)
            self.encoded, self._pending = self._pending, {}  # committed: the bytes are the stored documents'
            return done
        except (IntegrityError, DBAPIError, _Raced):  # a concurrent writer: one by one, each in a transaction
            out: list[InvoiceDoc | ValueError] = []
            for draft in drafts:
                try:
                    out.append(self.finalize(draft.doc() if isinstance(draft, EncodedDraft) else draft))
                except ValueError as exc:
                    out.append(exc)
            return out

    def _bulk(self, s: Session, given: Sequence[InvoiceDoc]) -> list[InvoiceDoc | ValueError]:
        numbering.lock_for_write(s)
        # the fields the store reads: an EncodedDraft's decoded head (plain attributes), else the document
        drafts: list[Any] = [d.head if isinstance(d, EncodedDraft) else d for d in given]
        stored = {
            (row.tenant, row.invoice_id): row
            for row in _stored(s, drafts, InvoiceRow.id, InvoiceRow.status, InvoiceRow.document,
                               InvoiceRow.customer, InvoiceRow.currency, InvoiceRow.version,
                               InvoiceRow.credited_minor, InvoiceRow.paid_minor, InvoiceRow.voided_at,
                               InvoiceRow.void_reason, lock=True)
        }  # fmt: skip
        out: list[InvoiceDoc | ValueError | None] = [None] * len(drafts)
        encoded: dict[int, tuple[InvoiceDoc, bytes]] = {}
        chosen: list[int] = []  # new invoices and stored drafts, in the order given
        money: dict[int, tuple[int, int]] = {}
        for i, draft in enumerate(drafts):
            found = stored.get((draft.tenant, draft.id))
            if found is not None and found.status != DRAFT:  # issued before: its stored document, as it is
                out[i] = decode(found.document)
                continue
            try:  # what the store checks (upsert_draft_in), in its order: the fields, then the stored draft's
                money[i] = _store_checks(draft)
                if found is not None:
                    if found.customer != draft.customer:
                        raise Conflict("customer", f"draft {draft.id!r} belongs to customer {found.customer!r}, "
                                                   f"not {draft.customer!r}")  # fmt: skip
                    if found.currency != draft.currency:
                        raise Conflict("currency", f"draft {draft.id!r} is in {found.currency}, not {draft.currency}")
            except ValueError as exc:
                out[i] = exc
                continue
            chosen.append(i)
        # one block of numbers per (tenant, year of the issue date), in the order given
        blocks: dict[tuple[str, int], list[int]] = {}
        for i in chosen:
            blocks.setdefault((drafts[i].tenant, drafts[i].issue_date.year), []).append(i)  # type: ignore[union-attr]
        prefix, series = self.issuing.prefix, self.issuing.series
        now = datetime.now(UTC)
        numbers: dict[int, str] = {}
        for (tenant, year), members in blocks.items():
            key = (numbering.InvoiceNumberRow.tenant == tenant, numbering.InvoiceNumberRow.issuer == prefix,
                   numbering.InvoiceNumberRow.series == series, numbering.InvoiceNumberRow.year == year)  # fmt: skip
            numbering.insert_ignore(s, numbering.InvoiceNumberRow, tenant=tenant, issuer=prefix, series=series,
                                    year=year, last=0, updated_at=now)  # fmt: skip
            s.execute(update(numbering.InvoiceNumberRow).where(*key)
                      .values(last=numbering.InvoiceNumberRow.last + len(members), updated_at=now))  # fmt: skip
            last = int(s.scalar(select(numbering.InvoiceNumberRow.last).where(*key)))
            for seq, i in enumerate(members, start=last - len(members) + 1):
                numbers[i] = numbering.format_number(prefix, series, year, seq)
        rows: list[dict] = []
        updates: list[dict] = []
        event_rows: list[dict] = []
        ids = _ulids(sum(3 if money[i][1] == 0 else 2 for i in chosen), now)  # (created,) finalized (+ paid)
        for i in chosen:
            draft = drafts[i]
            total, billed = money[i]
            # the draft was validated when issued (issue.py); a number and the status change none of its figures
            source = given[i]
            if isinstance(source, EncodedDraft):  # its JSON, numbered as it is (no decoding, no second encoding)
                data = source.finalized(numbers[i])
                doc = EncodedFinal(data, msgspec.structs.replace(draft, number=numbers[i], status="finalized"))
            else:
                doc = msgspec.structs.replace(draft, number=numbers[i], status="finalized")
                data = encode(doc)
            encoded[id(doc)] = (doc, data)
            row = _record_row(draft, settled_status(FINALIZED, billed, 0, 0), total, billed, data.decode(), now)
            row.update(issuer=prefix, series=series, number=numbers[i], finalized_at=now, version=2)
            found = stored.get((draft.tenant, draft.id))
            if found is None:
                rows.append(row)
                event_rows += _events(row, now, ids)
            else:  # a draft kept current (drafts.py, the API): finalized in place, as upsert_draft_in + finalize_in
                row.update(version=int(found.version) + 2, voided_at=found.voided_at, void_reason=found.void_reason)
                updates.append({**row, "k_id": found.id})
                event_rows += _stored_events(row, found, now, ids)
            out[i] = doc
        # executemany on the tables (the ORM's bulk insert costs ~3x more per row here)
        _insert(s, InvoiceRow.__table__, rows)
        _finalize_stored(s, updates)
        _insert(s, events.WebhookOutboxRow.__table__, event_rows)
        self._pending = encoded
        return out  # type: ignore[return-value]


class _Raced(Exception):
    """A stored draft changed under the batch (not a draft any more): the batch is rolled back, then each draft
    is finalized on its own."""


_FINAL_COLUMNS = ("period", "status", "total_minor", "billed_minor", "credited_minor", "paid_minor",
                  "amount_due_minor", "issue_date", "due_date", "document", "issuer", "series", "number",
                  "finalized_at", "version", "updated_at")  # fmt: skip


def _finalize_stored(s: Session, updates: list[dict]) -> None:
    """UPDATE the stored drafts of `updates` (row dicts + `k_id`, the primary key) to their finalized state:
    one executemany; only rows still drafts (locked by `_stored`; the count is checked where the driver
    reports it for executemany)."""
    if not updates:
        return
    table = InvoiceRow.__table__
    conn = s.connection()
    result = conn.execute(
        update(table)
        .where(table.c.id == bindparam("k_id"), table.c.status == DRAFT)
        .values({c: bindparam(c) for c in _FINAL_COLUMNS}),
        [{c: u[c] for c in ("k_id", *_FINAL_COLUMNS)} for u in updates],
    )
    if conn.dialect.supports_sane_multi_rowcount and result.rowcount != len(updates):
        raise _Raced(f"{len(updates) - result.rowcount} stored drafts changed under the batch")


def _stored_events(row: dict, found: Any, now: datetime, ids: list[str]) -> list[dict]:
    """The events the per-record path appends when it finalizes a stored draft (`upsert_draft_in` replaces it:
    no event; `finalize_in`: finalized with the version after the replacement and the stored credited and paid
    sums, then `apply_money`'s paid when nothing is due, one version later)."""
    state = {**row, "status": FINALIZED, "version": row["version"] - 1, "credited_minor": int(found.credited_minor),
             "paid_minor": int(found.paid_minor), "amount_due_minor": row["billed_minor"]}  # fmt: skip
    data = events.invoice_data(SimpleNamespace(**state), DRAFT)
    stamp = events.rfc3339(now)
    out = [_outbox_row(row, events.INVOICE_FINALIZED, data, now, "msg_" + ids.pop(), stamp)]
    status = row["status"]
    if status != FINALIZED and status in events.STATUS_EVENTS:
        data = events.invoice_data(SimpleNamespace(**row), FINALIZED)
        out.append(_outbox_row(row, events.STATUS_EVENTS[status], data, now, "msg_" + ids.pop(), stamp))
    return out


def _stored(s: Session, drafts: Sequence[InvoiceDoc], *columns: Any, lock: bool = False) -> list[Any]:
    """The store's rows (tenant, invoice_id, `columns`) of the drafts' invoices that exist: one query per tenant
    and 900 ids (an IN list on the unique (tenant, invoice_id) index; pairs of values cost SQLite ~3x more).
    `lock`: the rows locked until the transaction ends (PostgreSQL `FOR UPDATE`, by tenant and id, one order
    for every batch; SQLite holds the database write lock already), so what is read is what is written over."""
    ids: dict[str, list[str]] = {}
    for d in drafts:
        ids.setdefault(d.tenant, []).append(d.id)
    out: list[Any] = []
    for tenant in sorted(ids) if lock else ids:
        of_tenant = sorted(ids[tenant]) if lock else ids[tenant]
        for start in range(0, len(of_tenant), 900):
            stmt = select(InvoiceRow.tenant, InvoiceRow.invoice_id, *columns).where(
                InvoiceRow.tenant == tenant, InvoiceRow.invoice_id.in_(of_tenant[start : start + 900])
            )
            if lock:
                stmt = stmt.order_by(InvoiceRow.invoice_id).with_for_update()
            out += s.execute(stmt).all()
    return out


def _check_draft(draft: InvoiceDoc) -> None:
    """What the store checks of a draft before it writes it (Invalid naming the field)."""
    if draft.status != DRAFT or draft.number is not None:
        raise Invalid("status", f"a draft without a number (got {draft.status}, {draft.number!r})")
    text("tenant", draft.tenant, 128)
    text("invoice_id", draft.id, 256)
    text("customer", draft.customer, 256)
    text("period", draft.period, 64)
    check_currency(draft.currency)
    if draft.issue_date is None or draft.due_date is None:
        raise Invalid("issue_date", "a draft record has an issue and a due date")
    if draft.due_date < draft.issue_date:
        raise Invalid("due_date", f"{draft.due_date} is before issue_date {draft.issue_date}")


def _store_checks(draft: InvoiceDoc) -> tuple[int, int]:
    """What `upsert_draft_in` checks of a draft, in its order and with its messages (Invalid naming the field);
    the draft's (total, billed) in minor units. (Its JSON check is not repeated: `encode` gives a JSON object.)"""
    text("tenant", draft.tenant, 128)
    text("invoice_id", draft.id, 256)
    text("customer", draft.customer, 256)
    text("period", draft.period, 64)
    check_currency(draft.currency)
    total = to_minor("total", draft.total, draft.currency)
    billed = to_minor("amount_due", draft.amount_due, draft.currency)
    if billed > total:
        raise Invalid("amount_due", f"more than the total ({draft.amount_due} > {draft.total})")
    check_day("issue_date", draft.issue_date)
    check_day("due_date", draft.due_date)
    if draft.due_date < draft.issue_date:  # type: ignore[operator]
        raise Invalid("due_date", f"{draft.due_date} is before issue_date {draft.issue_date}")
    return total, billed


def _money(draft: InvoiceDoc) -> tuple[int, int]:
    """(total, billed) in minor units, checked as the store checks them (a negative total is refused)."""
    total = to_minor("total", draft.total, draft.currency)
    billed = to_minor("amount_due", draft.amount_due, draft.currency)
    if billed > total:
        raise Invalid("amount_due", f"more than the total ({draft.amount_due} > {draft.total})")
    return total, billed


def _record_row(doc: InvoiceDoc, status: str, total: int, billed: int, document: str, now: datetime) -> dict:
    """An `invoices` row of `doc` (the caller sets issuer, series, number, finalized_at, version)."""
    return {
        "tenant": doc.tenant, "invoice_id": doc.id, "customer": doc.customer, "period": doc.period,
        "currency": doc.currency, "status": status, "total_minor": total, "billed_minor": billed,
        "credited_minor": 0, "paid_minor": 0, "amount_due_minor": amount_due(billed, 0, 0),
        "issue_date": doc.issue_date, "due_date": doc.due_date, "document": document,
        "voided_at": None, "void_reason": None, "created_at": now, "updated_at": now,
    }  # fmt: skip


def _ulids(n: int, now: datetime) -> list[str]:
    """`n` ULIDs of the instant `now` (`entities.common.new_ulid`'s format: 48-bit milliseconds + 80 random bits,
    Crockford base32), from one read of the random source and one base32 encoding."""
    head = int(now.timestamp() * 1000).to_bytes(10, "big")  # the upper 80 of 160 bits: the milliseconds
    noise = os.urandom(10 * n)
    text = b32encode(b"".join(head + noise[k : k + 10] for k in range(0, 10 * n, 10))).translate(_CROCKFORD).decode()
    return [text[k + 6 : k + 32] for k in range(0, 32 * n, 32)]


# the 26 characters of a ULID are the last 26 of the standard base32 text of its value in 20 bytes
_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def _event_row(state: dict, type_: str, previous: str | None, now: datetime) -> dict:
    """A `webhook_outbox` row for an invoice in `state` (a row dict), as `webhooks.events.append` makes it."""
    data = events.invoice_data(SimpleNamespace(**state), previous)
    return _outbox_row(state, type_, data, now, "msg_" + new_ulid())


def _outbox_row(state: dict, type_: str, data: dict, now: datetime, event_id: str, stamp: str | None = None) -> dict:
    """The row of one event; `stamp` is `events.rfc3339(now)` when the caller has it."""
    stamp = stamp or events.rfc3339(now)
    body = orjson.dumps({"id": event_id, "type": type_, "timestamp": stamp, "data": data}).decode()
    return {"event_id": event_id, "tenant": state["tenant"], "type": type_, "subject": state["invoice_id"],
            "key": f"{state['tenant']}/{state['invoice_id']}", "body": body, "created_at": now,
            "fanned_at": None, "published_at": None}  # fmt: skip


def _events(row: dict, now: datetime, ids: list[str]) -> list[dict]:
    """The lifecycle events of a record created finalized (the per-record path's, in its order): created (as
    the first draft), finalized, and paid when nothing is due. Bodies as `webhooks.events.append` makes them
    (`events.invoice_data`, built here once for the three). `ids`: ULIDs to take the event ids from."""
    data = events.invoice_data(SimpleNamespace(**{**row, "status": DRAFT, "number": None, "issuer": None,
                                                  "series": None, "finalized_at": None, "version": 1}))  # fmt: skip
    stamp = events.rfc3339(now)
    out = [_outbox_row(row, events.INVOICE_CREATED, data, now, "msg_" + ids.pop(), stamp)]
    data = {**data, "number": row["number"], "status": FINALIZED, "previous_status": DRAFT,
            "issuer": row["issuer"], "series": row["series"], "finalized_at": stamp}  # fmt: skip
    out.append(_outbox_row(row, events.INVOICE_FINALIZED, data, now, "msg_" + ids.pop(), stamp))
    status = row["status"]
    if status != FINALIZED and status in events.STATUS_EVENTS:
        data = {**data, "status": status, "previous_status": FINALIZED, "version": row["version"]}
        out.append(_outbox_row(row, events.STATUS_EVENTS[status], data, now, "msg_" + ids.pop(), stamp))
    return out


def _insert(s: Session, table: Table, rows: list[dict]) -> None:
    """INSERT `rows` (dicts with the same keys) into `table` in the session's transaction: Core executemany; on
    SQLite straight to the driver with the column types' bind processors applied (SQLAlchemy's per-row parameter
    processing costs more than SQLite's insert there), each distinct value processed once."""
    if not rows:
        return
    conn = s.connection()
    dialect = conn.dialect
    if dialect.name != "sqlite":
        conn.execute(insert(table), rows)
        return
    keys = list(rows[0])
    compiled = insert(table).compile(dialect=dialect, column_keys=keys)
    order = compiled.positiontup or keys
    getter = itemgetter(*order)
    procs = [(i, proc, {}) for i, k in enumerate(order)
             if (proc := table.c[k].type.dialect_impl(dialect).bind_processor(dialect)) is not None]  # fmt: skip
    params: list = []
    for row in rows:
        values = getter(row)
        if procs:
            values = list(values)
            for i, proc, memo in procs:  # each distinct value processed once (one `now` for the whole batch)
                v = values[i]
                if v is not None:
                    done = memo.get(v)
                    if done is None:
                        done = memo[v] = proc(v)
                    values[i] = done
            values = tuple(values)
        params.append(values)
    conn.exec_driver_sql(compiled.string, params)
