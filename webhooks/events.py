"""Lifecycle events: one row in `webhook_outbox` per invoice transition, credit note and payment, appended in
the SAME transaction as the change (a rolled-back finalize leaves no event; a committed one always has its event).

Event types (docs/webhooks.md):
- `invoice.created` (the first draft), `invoice.finalized`, `invoice.paid`, `invoice.partially_paid`,
  `invoice.overdue`, `invoice.voided` — data: the invoice summary (`invoice_data`), not the document itself;
- `credit_note.created` — data: the credit note (`credit_note_data`);
- `payment.recorded` — data: the payment and its allocations (`payment_data`);
- `customer.*`, `subscription.started`, `.terminated`, `.trial_ended`, `.termination_alert`, `.updated` — data: the
  customer or subscription (`subscription_event`);
- `wallet_transaction.created` — data: a wallet's new transaction (`wallet_transaction_event`): a top-up (paid or
  granted, by hand or automatic: `source` manual, threshold or interval) or credits voided;
- `dunning.reminder`, `dunning.late_fee`, `dunning.suspended`, `dunning.reactivated` — data: the dunning step
  (docs/dunning.md), the same as on the notifications topic.
- `balance.threshold_crossed`, `balance.exhausted`, `credit_limit.exceeded`, `credit_limit.threshold_crossed`,
  `credit_limit.soft_reached`, `commitment.threshold_crossed` (processor/balances.py) and `session.held`,
  `session.released`, `session.release_failed` (processor/sessions.py) — data: the processor's notification,
  written once by webhooks/notifications_relay.py, keyed `tenant/customer`. The `session.*` types are opt-in
  (`OPT_IN_TYPES`, `subscribed`): only an endpoint that names them gets them, not one that takes every type.
- `events.errors` (webhooks/lago_digest.py, opt-in too) — data: the transaction ids of Lago events accepted with
  an error in the last hour, by error (Lago's `events.errors` webhook).
Replacing a draft as usage arrives is not an event (it happens on every close run and would flood receivers).

Each event is stored as the exact body every receiver gets (Standard Webhooks' recommended envelope plus the id):
`{"id": "msg_<ULID>", "type": ..., "timestamp": "<RFC 3339 UTC>", "data": {...}}`. The same bytes go to every
endpoint, on every retry, and to the `invoice-events` Kafka topic, keyed `tenant/invoice_id` (a payment:
`tenant/customer`). Money appears twice: a decimal string with the currency's digits and integer minor units.

Rows are read by the dispatcher (webhooks/dispatcher.py): `fanned_at` is set once the deliveries to the
endpoints were created, `published_at` once Kafka acknowledged it. Why markers and not one read position:
on PostgreSQL invoice writes take row locks only, so two transactions can commit in another order than their
seq; a position could pass a seq that commits a moment later and miss that event for ever.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

import msgspec
import orjson
from sqlalchemy import BigInteger, DateTime, Index, Integer, String, Text, insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from meterstream.entities.common import new_ulid
from meterstream.entities.db import Base
from meterstream.entities.invoice_rules import from_minor

INVOICE_CREATED = "invoice.created"
INVOICE_FINALIZED = "invoice.finalized"
INVOICE_PAID = "invoice.paid"
INVOICE_PARTIALLY_PAID = "invoice.partially_paid"
INVOICE_OVERDUE = "invoice.overdue"
INVOICE_VOIDED = "invoice.voided"
CREDIT_NOTE_CREATED = "credit_note.created"
CUSTOMER_CREATED = "customer.created"
CUSTOMER_UPDATED = "customer.updated"
CUSTOMER_DELETED = "customer.deleted"
SUBSCRIPTION_STARTED = "subscription.started"
SUBSCRIPTION_TERMINATED = "subscription.terminated"
SUBSCRIPTION_TRIAL_ENDED = "subscription.trial_ended"
SUBSCRIPTION_TERMINATION_ALERT = "subscription.termination_alert"
SUBSCRIPTION_UPDATED = "subscription.updated"
CREDIT_NOTE_REFUNDED = "credit_note.refunded"
PAYMENT_RECORDED = "payment.recorded"
WALLET_TRANSACTION_CREATED = "wallet_transaction.created"
WALLET_TRANSACTION_SETTLED = "wallet_transaction.settled"
# collections (docs/dunning.md): data is the notification's (invoice_emitter/dunning_run.py), keyed `tenant/customer`
DUNNING_REMINDER = "dunning.reminder"
DUNNING_LATE_FEE = "dunning.late_fee"
DUNNING_SUSPENDED = "dunning.suspended"
DUNNING_REACTIVATED = "dunning.reactivated"
# prepaid balances and credit limits (docs/wallets.md): the processor's notifications, relayed once each
BALANCE_THRESHOLD_CROSSED = "balance.threshold_crossed"
BALANCE_EXHAUSTED = "balance.exhausted"
CREDIT_LIMIT_EXCEEDED = "credit_limit.exceeded"
# postpaid levels (docs/provisioning.md). The processor's own names are processor/balances.py LIMIT_LEVEL,
# SOFT_NOTE, COMMITMENT_LEVEL and processor/sessions.py HELD, RELEASED, RELEASE_FAILED; spelled here because
# importing the stream processor would load it (and Kafka, telecom rating) into every entity-store user
# (+0.24 s per CLI start); tests/webhooks/test_notifications_relay.py checks both spellings are the same.
CREDIT_LIMIT_THRESHOLD_CROSSED = "credit_limit.threshold_crossed"
CREDIT_LIMIT_SOFT_REACHED = "credit_limit.soft_reached"
COMMITMENT_THRESHOLD_CROSSED = "commitment.threshold_crossed"
# telecom sessions (docs/telecom.md): a record held behind a sequence gap, held records rated, a release that failed
SESSION_HELD = "session.held"
SESSION_RELEASED = "session.released"
SESSION_RELEASE_FAILED = "session.release_failed"
# Lago events accepted with an error, reported once an hour (webhooks/lago_digest.py; Lago's `events.errors`)
EVENTS_ERRORS = "events.errors"
PROCESSOR_NOTIFICATIONS = (BALANCE_THRESHOLD_CROSSED, BALANCE_EXHAUSTED, CREDIT_LIMIT_EXCEEDED,
                           CREDIT_LIMIT_THRESHOLD_CROSSED, CREDIT_LIMIT_SOFT_REACHED, COMMITMENT_THRESHOLD_CROSSED,
                           SESSION_HELD, SESSION_RELEASED, SESSION_RELEASE_FAILED)  # fmt: skip
# opt-in: one event per held record or release (telecom sessions), far more than the others; delivered only to an
# endpoint that names them, never part of an endpoint's "every type" (no event_types), and relayed from the
# notifications topic only for a tenant with an enabled endpoint that names the kind (webhooks/notifications_relay)
OPT_IN_TYPES = frozenset({SESSION_HELD, SESSION_RELEASED, SESSION_RELEASE_FAILED, EVENTS_ERRORS})
EVENT_TYPES = (INVOICE_CREATED, INVOICE_FINALIZED, INVOICE_PAID, INVOICE_PARTIALLY_PAID, INVOICE_OVERDUE,
               INVOICE_VOIDED, CREDIT_NOTE_CREATED, CREDIT_NOTE_REFUNDED, PAYMENT_RECORDED,
               CUSTOMER_CREATED, CUSTOMER_UPDATED, CUSTOMER_DELETED, SUBSCRIPTION_STARTED, SUBSCRIPTION_TERMINATED,
               SUBSCRIPTION_TRIAL_ENDED, SUBSCRIPTION_TERMINATION_ALERT, SUBSCRIPTION_UPDATED,
               WALLET_TRANSACTION_CREATED, WALLET_TRANSACTION_SETTLED,
               DUNNING_REMINDER, DUNNING_LATE_FEE,
               DUNNING_SUSPENDED, DUNNING_REACTIVATED, *PROCESSOR_NOTIFICATIONS, EVENTS_ERRORS)  # fmt: skip


# The events a Lago-format endpoint gets (docs/lago.md "Webhooks"), as Lago names them: (webhook_type, object_type).
# Lago's `invoice.created` announces an issued (finalized) invoice and `invoice.drafted` a draft; Lago's payment
# status moves to `succeeded` only when the invoice is paid in full. The others have no Lago equivalent here.
LAGO_TYPES = {INVOICE_CREATED: ("invoice.drafted", "invoice"), INVOICE_FINALIZED: ("invoice.created", "invoice"),
              INVOICE_PAID: ("invoice.payment_status_updated", "invoice"),
              INVOICE_OVERDUE: ("invoice.payment_overdue", "invoice"), INVOICE_VOIDED: ("invoice.voided", "invoice"),
              CREDIT_NOTE_CREATED: ("credit_note.created", "credit_note"),
              CUSTOMER_CREATED: ("customer.created", "customer"), CUSTOMER_UPDATED: ("customer.updated", "customer"),
              SUBSCRIPTION_STARTED: ("subscription.started", "subscription"),
              SUBSCRIPTION_TERMINATED: ("subscription.terminated", "subscription"),
              SUBSCRIPTION_TRIAL_ENDED: ("subscription.trial_ended", "subscription"),
              SUBSCRIPTION_TERMINATION_ALERT: ("subscription.termination_alert", "subscription"),
              SUBSCRIPTION_UPDATED: ("subscription.updated", "subscription"),
              WALLET_TRANSACTION_CREATED: ("wallet_transaction.created", "wallet_transaction"),
              WALLET_TRANSACTION_SETTLED: ("wallet_transaction.updated", "wallet_transaction"),
              EVENTS_ERRORS: ("events.errors", "events_errors")}  # fmt: skip


def subscribed(event_types: Iterable[str], event_type: str) -> bool:
    """Whether an endpoint with `event_types` gets `event_type`: a type it names, or, when it names none (every
    type), any type but the opt-in ones (`OPT_IN_TYPES`)."""
    named = tuple(event_types)
    return event_type in named if named else event_type not in OPT_IN_TYPES


# the event an invoice's new status announces (a status without an entry announces nothing)
STATUS_EVENTS = {"finalized": INVOICE_FINALIZED, "paid": INVOICE_PAID, "partially_paid": INVOICE_PARTIALLY_PAID,
                 "overdue": INVOICE_OVERDUE, "voided": INVOICE_VOIDED}  # fmt: skip

# BIGINT primary keys are not rowid aliases on SQLite: there the column is INTEGER (autoincrement).
SeqType = BigInteger().with_variant(Integer(), "sqlite")


class WebhookOutboxRow(Base):
    __tablename__ = "webhook_outbox"
    __table_args__ = (
        Index("ix_webhook_outbox_fanned_at", "fanned_at", "seq"),
        Index("ix_webhook_outbox_published_at", "published_at", "seq"),
        Index("ix_webhook_outbox_tenant_seq", "tenant", "seq"),
        {"sqlite_autoincrement": True},  # never reuse a seq
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    tenant: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(256))  # the invoice id (a payment: its reference)
    key: Mapped[str] = mapped_column(String(512))  # the Kafka key
    body: Mapped[str] = mapped_column(Text)  # the JSON every receiver gets
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    fanned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _day(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _when(value: datetime | None) -> str | None:
    if value is None:
        return None
    return rfc3339(value if value.tzinfo is not None else value.replace(tzinfo=UTC))


def _money(data: dict[str, Any], currency: str, **minor: int) -> None:
    for name, amount in minor.items():
        data[name] = str(from_minor(int(amount), currency))
        data[f"{name}_minor"] = int(amount)


def append(s: Session, tenant: str, type: str, subject: str, key: str, data: dict[str, Any],
           event_id: str | None = None) -> str:  # fmt: skip
    """Append one event in the caller's transaction; returns its id. One INSERT executed now (its seq follows the
    statements before it), not an ORM object: a close finalizing thousands of invoices in one session does not
    carry thousands more objects through every flush. `event_id`: a deterministic id (a relayed notification's;
    the unique column refuses it twice), default a new one."""
    if type not in EVENT_TYPES:
        raise ValueError(f"type: one of {', '.join(EVENT_TYPES)} (got {type!r})")
    now = datetime.now(UTC)
    event_id = event_id or "msg_" + new_ulid()
    body = orjson.dumps({"id": event_id, "type": type, "timestamp": rfc3339(now), "data": data}).decode()
    row = {"event_id": event_id, "tenant": tenant, "type": type, "subject": subject, "key": key, "body": body,
           "created_at": now}  # fmt: skip
    s.execute(insert(WebhookOutboxRow.__table__), row)  # a Core statement compiled once, parameters per event
    return event_id


def invoice_data(row: Any, previous_status: str | None = None) -> dict[str, Any]:
    """The summary of an invoice record (entities/invoices.py InvoiceRow) that an event carries."""
    data: dict[str, Any] = {
        "object": "invoice",
        "tenant": row.tenant,
        "invoice_id": row.invoice_id,
        "number": row.number,
        "customer": row.customer,
        "period": row.period,
        "status": row.status,
        "previous_status": previous_status,
        "currency": row.currency,
    }
    _money(data, row.currency, total=row.total_minor, billed=row.billed_minor, credited=row.credited_minor,
           paid=row.paid_minor, amount_due=row.amount_due_minor)  # fmt: skip
    data.update(
        issuer=row.issuer,
        series=row.series,
        issue_date=_day(row.issue_date),
        due_date=_day(row.due_date),
        finalized_at=_when(row.finalized_at),
        voided_at=_when(row.voided_at),
        void_reason=row.void_reason,
        version=int(row.version),
    )
    return data


def invoice_event(s: Session, row: Any, type: str, previous_status: str | None = None) -> str:
    """Append an invoice event: key `tenant/invoice_id`."""
    data = invoice_data(row, previous_status)
    return append(s, row.tenant, type, row.invoice_id, f"{row.tenant}/{row.invoice_id}", data)


def status_changed(row: Any, previous_status: str) -> str | None:
    """After money moved on an invoice (entities/invoices.py `apply_money`): the event its new status announces,
    in the row's own session and transaction; None when the status did not change or announces nothing."""
    if row.status == previous_status or row.status not in STATUS_EVENTS:
        return None
    s = Session.object_session(row)
    if s is None:  # pragma: no cover - apply_money always runs on a row loaded in the writer's session
        raise RuntimeError("invoice row outside a session: the event would not be in the transaction")
    return invoice_event(s, row, STATUS_EVENTS[row.status], previous_status)


def credit_note_event(s: Session, row: Any, type: str = CREDIT_NOTE_CREATED) -> str:
    """`credit_note.created` (or `credit_note.refunded`) for a credit note row (entities/credit_notes.py), keyed by
    its invoice."""
    data: dict[str, Any] = {
        "object": "credit_note",
        "tenant": row.tenant,
        "credit_note_id": row.credit_note_id,
        "number": row.number,
        "invoice_id": row.invoice_id,
        "invoice_number": row.invoice_number,
        "customer": row.customer,
        "status": row.status,
        "reason": row.reason,
        "currency": row.currency,
    }
    _money(data, row.currency, total=row.total_minor, credit=row.credit_minor, refund=row.refund_minor)
    data["lines"] = [
        {"description": x["description"], "amount": str(from_minor(int(x["amount_minor"]), row.currency)),
         "amount_minor": int(x["amount_minor"])}
        for x in orjson.loads(row.lines)
    ]  # fmt: skip
    data["issue_date"] = _day(row.issue_date)
    if row.refunded_on is not None:
        data["refunded_on"], data["refund_reference"] = _day(row.refunded_on), row.refund_reference
    return append(s, row.tenant, type, row.invoice_id, f"{row.tenant}/{row.invoice_id}", data)


def payment_event(s: Session, row: Any) -> str:
    """`payment.recorded` for a payment row (entities/payments.py), keyed `tenant/customer` (a payment may
    reach several invoices of the customer)."""
    data: dict[str, Any] = {
        "object": "payment",
        "tenant": row.tenant,
        "reference": row.reference,
        "customer": row.customer,
        "invoice_id": row.invoice_id,
        "currency": row.currency,
    }
    _money(data, row.currency, amount=row.amount_minor)
    data["paid_on"] = _day(row.paid_on)
    data["allocations"] = [
        {"invoice_id": a["invoice_id"], "number": a["number"],
         "amount": str(from_minor(int(a["amount_minor"]), row.currency)), "amount_minor": int(a["amount_minor"])}
        for a in orjson.loads(row.allocations)
    ]  # fmt: skip
    return append(s, row.tenant, PAYMENT_RECORDED, row.reference, f"{row.tenant}/{row.customer}", data)


def customer_event(s: Session, doc: Any, type: str) -> str:
    """`customer.created`, `customer.updated` or `customer.deleted` for a stored customer document (entities/
    customers.py CustomerDoc, as written), keyed `tenant/customer`."""
    data: dict[str, Any] = {"object": "customer", "tenant": doc.tenant, "customer": doc.external_id}
    for name in ("name", "legal_name", "email", "tax_id", "country", "currency", "timezone", "invoice_grace_days",
                 "payment_terms_days", "description", "version", "deleted"):  # fmt: skip
        data[name] = getattr(doc, name)
    data["address"] = msgspec.to_builtins(doc.address) if doc.address is not None else None
    data["metadata"] = dict(doc.metadata)
    return append(s, doc.tenant, type, doc.external_id, f"{doc.tenant}/{doc.external_id}", data)


def subscription_event(s: Session, doc: Any, type: str, now: datetime, extra: dict[str, Any] | None = None) -> str:
    """A subscription document's `subscription.started`, `.terminated`, `.trial_ended`, `.termination_alert`
    (entities/subscriptions.py `announce_due`) or `.updated` (a change of a subscription that exists), keyed
    `tenant/customer`: the plan of the phase that started (the first), ended (the last) or is in effect (the
    notices and updates; the last when none is); `extra` data of a notice or an update. An update's status is
    the subscription's own (pending, active, canceled, terminated)."""
    first, last = doc.phases[0], doc.phases[-1]
    ended = type == SUBSCRIPTION_TERMINATED
    if type == SUBSCRIPTION_STARTED:
        phase = first
    elif ended:
        phase = last
    else:
        phase = doc.phase_at(now) or last
    data: dict[str, Any] = {
        "object": "subscription", "tenant": doc.tenant, "subscription": doc.external_id, "customer": doc.customer,
        "status": ("canceled" if last.end is not None and last.end <= first.start else "terminated") if ended
        else doc.status if type == SUBSCRIPTION_UPDATED else "active",
        "plan_code": phase.plan_code, "plan_version": phase.plan_version, "started_at": _when(first.start),
        "ended_at": _when(last.end), "version": doc.version, "announced_at": _when(now),
        **{k: _when(v) if isinstance(v, datetime) else v for k, v in (extra or {}).items()},
    }  # fmt: skip
    return append(s, doc.tenant, type, doc.external_id, f"{doc.tenant}/{doc.customer}", data)


def wallet_transaction_event(s: Session, tx: Any, wallet: Any, source: str, type: str = WALLET_TRANSACTION_CREATED
                             ) -> str:  # fmt: skip
    """`wallet_transaction.created` for a new wallet transaction row (entities/wallets.py WalletTransactionRow of
    the wallet row `wallet`), or `wallet_transaction.settled` when a pending one's payment arrived; keyed
    `tenant/customer`. `source`: manual, threshold or interval (what wrote it)."""
    data: dict[str, Any] = {
        "object": "wallet_transaction",
        "tenant": tx.tenant,
        "transaction_id": tx.transaction_id,
        "wallet_id": wallet.wallet_id,
        "customer": wallet.customer,
        "direction": tx.direction,
        "kind": tx.kind,
        "source": source,
        "status": tx.status,
        "credits": tx.credits,
        "currency": wallet.currency,
    }
    _money(data, wallet.currency, amount=tx.units)
    data.update(reference=tx.reference, name=tx.name, expires_at=_when(tx.expires_at),
                created_at=_when(tx.created_at), settled_at=_when(tx.settled_at))  # fmt: skip
    return append(s, tx.tenant, type, tx.transaction_id, f"{tx.tenant}/{wallet.customer}", data)


__all__ = [
    "BALANCE_EXHAUSTED",
    "BALANCE_THRESHOLD_CROSSED",
    "CREDIT_LIMIT_EXCEEDED",
    "CREDIT_NOTE_CREATED",
    "DUNNING_LATE_FEE",
    "DUNNING_REACTIVATED",
    "DUNNING_REMINDER",
    "DUNNING_SUSPENDED",
    "EVENTS_ERRORS",
    "EVENT_TYPES",
    "INVOICE_CREATED",
    "INVOICE_FINALIZED",
    "INVOICE_OVERDUE",
    "INVOICE_PAID",
    "INVOICE_PARTIALLY_PAID",
    "INVOICE_VOIDED",
    "LAGO_TYPES",
    "OPT_IN_TYPES",
    "PAYMENT_RECORDED",
    "STATUS_EVENTS",
    "WALLET_TRANSACTION_CREATED",
    "WebhookOutboxRow",
    "append",
    "credit_note_event",
    "invoice_data",
    "invoice_event",
    "payment_event",
    "status_changed",
    "subscribed",
    "wallet_transaction_event",
]
