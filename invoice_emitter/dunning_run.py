"""The collections run (docs/dunning.md): every billing run, after `mark_overdue`, applies the dunning steps that
have come due (billing/dunning.py), each once.

For each overdue invoice with something due whose customer has a policy (its own, else its tenant's default):
- a reminder -> notification `dunning.reminder`;
- a late fee -> notification `dunning.late_fee` and a pending charge (entities/dunning.py) that the customer's
  next invoice bills as a line;
- the suspension (after the last reminder, if the policy says so) -> provisioning command `suspend` with reason
  `invoice_overdue`, and notification `dunning.suspended`.
For each customer suspended by dunning whose suspended invoices are all settled now (paid, credited or voided):
provisioning command `reactivate` (reason `invoice_overdue`) and notification `dunning.reactivated`.

Every notification also goes to the webhooks outbox (event types of the same names, webhooks/events.py).
Order of the writes, so that nothing is lost or done twice: the Kafka messages (ids deterministic from the
invoice and the step, schemas/provisioning.py) are produced and acknowledged first; then one database
transaction logs the steps (unique per invoice and step), appends the webhook events and adds the charges. A
crash in between sends the same ids again on the next run (consumers apply an id once) and logs them then; a
step already logged (by a concurrent run) is not logged, charged or announced again. Without `publish`
(`billing run --no-publish`) nothing goes to Kafka; the log, webhooks and charges are written all the same.

The reactivation step also runs at once for one customer when a payment, credit note or void settles what it was
suspended for (`OnSettled`, called by the API's finance routes): the same planning (`plan_reactivation`) and
the same writes (`apply_planned`), so whichever comes first does it and the other does nothing more.

`main_dunning(settings, dry_run=False, as_json=False) -> int` is the command `meterstream billing dunning
[--dry-run] [--json]`: one collections run on its own (today in UTC); `--dry-run` lists the steps due without
doing them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from meterstream.billing.dunning import OverdueInvoice, Step, reactivation_due, steps_due
from meterstream.entities import dunning as store
from meterstream.entities.invoice_rules import OVERDUE, VOIDED, from_minor
from meterstream.entities.invoices import InvoiceRow
from meterstream.schemas.provisioning import (
    NOTIFICATIONS,
    PROVISIONING,
    Notification,
    ProvisioningCommand,
    customer_key,
    encode,
)
from meterstream.schemas.settings import Settings
from meterstream.webhooks import events

log = logging.getLogger("meterstream.dunning")

KINDS = {"reminder": events.DUNNING_REMINDER, "late_fee": events.DUNNING_LATE_FEE,
         "suspend": events.DUNNING_SUSPENDED, "reactivate": events.DUNNING_REACTIVATED}  # fmt: skip


class Sink(Protocol):
    """Where the messages go: `send` queues one (topic is NOTIFICATIONS or PROVISIONING, before the prefix),
    `flush` returns once every queued message is acknowledged, or raises."""

    def send(self, topic: str, key: bytes, value: bytes) -> None: ...

    def flush(self) -> None: ...


@dataclass
class DunningResult:
    reminders: int = 0
    late_fees: int = 0
    suspended: int = 0
    reactivated: int = 0
    charges_billed: int = 0  # pending charges found on an issued invoice by this run
    steps: list[dict[str, Any]] = field(default_factory=list)  # what was done (or, dry run, is due)
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        verb = "due" if self.dry_run else "done"
        return (f"dunning: {self.reminders} reminders, {self.late_fees} late fees, {self.suspended} suspensions, "
                f"{self.reactivated} reactivations {verb}")  # fmt: skip


@dataclass(frozen=True)
class _Planned:
    tenant: str
    customer: str
    invoice_ids: tuple[str, ...]  # the invoice (a reactivation: every invoice it lifts)
    step: Step
    notification: Notification
    command: ProvisioningCommand | None
    charge: tuple[str, int, str] | None  # (currency, amount in minor units, description) of a late fee


def _rfc3339(when: datetime) -> str:
    return events.rfc3339(when)


def _days_overdue(due: date, on: date) -> int:
    return (on - due).days


def _plan_invoice(row: InvoiceRow, step: Step, now: datetime) -> _Planned:
    number = row.number or row.invoice_id
    due = from_minor(int(row.amount_due_minor), row.currency)
    ident = f"dunning:{row.tenant}:{row.invoice_id}:{step.name}"
    data: dict[str, Any] = {
        "invoice_id": row.invoice_id, "number": number, "step": step.name, "due_on": step.due_on.isoformat(),
        "invoice_due_date": row.due_date.isoformat(), "days_overdue": _days_overdue(row.due_date, step.due_on),
        "currency": row.currency, "amount_due": str(due),
    }  # fmt: skip
    command = None
    charge = None
    if step.kind == "reminder":
        data.update(reminder=step.number, last=step.last)
    elif step.kind == "late_fee":
        assert step.amount is not None
        data.update(late_fee=str(step.amount), late_fee_number=step.number)
        description = f"Late fee {step.number} on invoice {number} ({row.currency} {due} due since {row.due_date})"
        charge = (row.currency, int(step.amount.scaleb(_digits(row.currency))), description)
    elif step.kind == "suspend":
        command = ProvisioningCommand(
            id=ident, tenant=row.tenant, customer=row.customer, command="suspend", reason="invoice_overdue",
            cause=f"invoice {number} overdue {data['days_overdue']} days after the last reminder",
            state={k: data[k] for k in ("invoice_id", "number", "amount_due", "currency", "invoice_due_date",
                                        "days_overdue")},
            at=_rfc3339(now),
        )  # fmt: skip
    note = Notification(id=ident, tenant=row.tenant, customer=row.customer, kind=KINDS[step.kind], data=data,
                        at=_rfc3339(now))  # fmt: skip
    return _Planned(row.tenant, row.customer, (row.invoice_id,), step, note, command, charge)


def _digits(currency: str) -> int:
    from meterstream.rating.money import minor_units

    return minor_units(currency)


def _plan_reactivation(tenant: str, customer: str, rows: list[InvoiceRow], step: Step, now: datetime) -> _Planned:
    ids = tuple(sorted(r.invoice_id for r in rows))
    numbers = [r.number or r.invoice_id for r in sorted(rows, key=lambda r: r.invoice_id)]
    how = "voided" if all(r.status == VOIDED for r in rows) else "paid"
    ident = f"dunning:{tenant}:{customer}:reactivate:{'+'.join(ids)}"
    state = {"invoices": list(ids), "numbers": numbers, "amount_due": "0"}
    command = ProvisioningCommand(id=ident, tenant=tenant, customer=customer, command="reactivate",
                                  reason="invoice_overdue", cause=f"invoice {', '.join(numbers)} {how}",
                                  state=state, at=_rfc3339(now))  # fmt: skip
    data = {"step": "reactivate", "due_on": step.due_on.isoformat(), "invoices": list(ids), "numbers": numbers}
    note = Notification(id=ident, tenant=tenant, customer=customer, kind=events.DUNNING_REACTIVATED, data=data,
                        at=_rfc3339(now))  # fmt: skip
    return _Planned(tenant, customer, ids, step, note, command, None)


def plan(sf: sessionmaker, today: date, now: datetime | None = None) -> list[_Planned]:
    """Every step due by `today` and not logged yet (read only)."""
    now = now or datetime.now(UTC)
    out: list[_Planned] = []
    with sf() as s:
        policies = store.load_policies(s)
        rows = [] if not policies else list(s.scalars(select(InvoiceRow).where(
            InvoiceRow.status == OVERDUE, InvoiceRow.amount_due_minor > 0,
            InvoiceRow.tenant.in_({t for t, _ in policies})).order_by(InvoiceRow.due_date, InvoiceRow.id)))  # fmt: skip
        done = store.done_steps(s, [(r.tenant, r.invoice_id) for r in rows])
        for row in rows:
            policy = store.policy_for(policies, row.tenant, row.customer)
            if policy is None:
                continue
            invoice = OverdueInvoice(row.invoice_id, row.currency, row.due_date,
                                     from_minor(int(row.amount_due_minor), row.currency))  # fmt: skip
            for step in steps_due(invoice, policy, today, done.get((row.tenant, row.invoice_id), ())):
                out.append(_plan_invoice(row, step, now))
        out += _reactivations(s, today, now)
    return out


def _reactivations(s: Session, today: date, now: datetime, tenant: str | None = None,
                   customer: str | None = None) -> list[_Planned]:  # fmt: skip
    """The reactivations due: every customer suspended by dunning (of one tenant, or one customer of it, when
    given) whose suspended invoices are all settled now."""
    out: list[_Planned] = []
    for (t, c), invoice_ids in sorted(store.open_suspensions(s, tenant, customer).items()):
        suspended = list(s.scalars(select(InvoiceRow).where(InvoiceRow.tenant == t,
                                                            InvoiceRow.invoice_id.in_(invoice_ids))))  # fmt: skip
        dues = [
            (r.invoice_id, Decimal(0) if r.status == VOIDED else from_minor(int(r.amount_due_minor), r.currency))
            for r in suspended
        ]
        step = reactivation_due(dues, today)
        if step is not None:
            out.append(_plan_reactivation(t, c, suspended, step, now))
    return out


def plan_reactivation(sf: sessionmaker, tenant: str, customer: str, today: date,
                      now: datetime | None = None) -> list[_Planned]:  # fmt: skip
    """The customer's reactivation if it is due now (read only): the collections run's own rule
    (`reactivation_due` over its open suspensions), for one customer. Empty when it is not suspended by
    dunning, or still owes on one of the invoices it was suspended for."""
    with sf() as s:
        return _reactivations(s, today, now or datetime.now(UTC), tenant, customer)


def run_dunning(sf: sessionmaker, today: date, sink: Sink | None = None, dry_run: bool = False,
                now: datetime | None = None) -> DunningResult:  # fmt: skip
    """Apply every step due by `today` once (module docstring). `sink`: Kafka (None: no messages)."""
    now = now or datetime.now(UTC)
    planned = plan(sf, today, now)
    result = DunningResult(dry_run=dry_run)
    if dry_run:
        for p in planned:
            _count(result, p)
        return result
    apply_planned(sf, planned, sink, now, result)
    result.charges_billed = store.settle_billed(sf, now)
    for step in result.steps:
        log.info("dunning: %s %s %s %s", step["tenant"], step["customer"], step["invoice"], step["step"])
    return result


def apply_planned(sf: sessionmaker, planned: list[_Planned], sink: Sink | None, now: datetime,
                  result: DunningResult) -> DunningResult:  # fmt: skip
    """Do the `planned` steps once each (module docstring: Kafka acknowledged first, then one transaction logs
    them, appends their webhook events and adds their charges); counts what this call did in `result`."""
    if sink is not None and planned:
        for p in planned:
            key = customer_key(p.tenant, p.customer)
            if p.command is not None:
                sink.send(PROVISIONING, key, encode(p.command))
            sink.send(NOTIFICATIONS, key, encode(p.notification))
        sink.flush()  # acknowledged before anything is logged: a failure here logs nothing, the next run retries
    if planned:
        with sf.begin() as s:
            from meterstream.entities.numbering import lock_for_write

            lock_for_write(s)
            for p in planned:
                new = [store.record_step(s, p.tenant, i, p.customer, p.step.name, p.step.due_on, p.notification.id,
                                         p.notification.data, at=now) for i in p.invoice_ids]  # fmt: skip
                if not any(new):
                    continue  # a concurrent run did it
                events.append(s, p.tenant, p.notification.kind, p.invoice_ids[0], f"{p.tenant}/{p.customer}",
                              {"object": "dunning", "id": p.notification.id, "customer": p.customer,
                               **p.notification.data})  # fmt: skip
                if p.charge is not None:
                    currency, minor, description = p.charge
                    store.add_charge(s, p.tenant, p.customer, p.invoice_ids[0], p.step.name, description, currency,
                                     minor, p.step.due_on, at=now)  # fmt: skip
                _count(result, p)
    return result


def _count(result: DunningResult, p: _Planned) -> None:
    kind = p.step.kind
    if kind == "reminder":
        result.reminders += 1
    elif kind == "late_fee":
        result.late_fees += 1
    elif kind == "suspend":
        result.suspended += 1
    else:
        result.reactivated += 1
    entry = {"tenant": p.tenant, "customer": p.customer, "invoice": "+".join(p.invoice_ids), "step": p.step.name,
             "due_on": p.step.due_on.isoformat()}  # fmt: skip
    if p.charge is not None:
        entry["late_fee"] = p.notification.data["late_fee"]
    result.steps.append(entry)


# --- Kafka --------------------------------------------------------------------------------------------------


class KafkaSink:
    """The notifications and provisioning topics (under the settings' prefix), created when missing."""

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        from meterstream.ingest.producer import DeliveryTracker, make_producer

        self.settings, self.timeout = settings, timeout
        ensure_dunning_topics(settings, timeout)
        self.tracker = DeliveryTracker()
        self.producer = make_producer(settings, **{"linger.ms": 5})

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.producer.produce(self.settings.topic(topic), value=value, key=key, on_delivery=self.tracker)
        self.producer.poll(0)

    def flush(self) -> None:
        from meterstream.ingest.producer import undelivered

        if (why := undelivered(self.producer, self.tracker, self.timeout)) is not None:
            raise RuntimeError(f"dunning: messages not delivered to Kafka: {why}")

    def close(self) -> None:
        """Give up what is still queued (a failed flush's leftovers would fail again later): the next sink starts
        clean."""
        self.producer.purge()
        self.producer.poll(0)


def ensure_dunning_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create the notifications and provisioning topics (and the balances topic beside them) when missing:
    `ingest.topics.ensure_provisioning_topics`, idempotent."""
    from meterstream.ingest.topics import ensure_provisioning_topics

    return ensure_provisioning_topics(settings, timeout)


class OnSettled:
    """The reactivation at once when money settles what a customer was suspended for: a payment, a credit note or
    a void calls it with the customer (`api/routes/invoices.py` after each of them). It does the collections
    run's reactivation step for that customer alone (`plan_reactivation`, `apply_planned`: the same rule, ids,
    messages, log and webhook event, so a later run or a second call does nothing more) through one Kafka
    sink, made on first need (`sink_factory`, default `KafkaSink(settings, timeout)`) and kept while it works.

    It never fails its caller: the money is recorded whatever happens here. Kafka down or the store failing:
    logged, nothing is logged as done, the sink is closed and dropped (the next call makes a fresh one), and the
    next collections run (`meterstream billing dunning`, or the daily billing run) reactivates as before.

    One call works at a time (one sink, one flush) and no call waits for another: a call that finds one running
    hands its customer to it (at most `max_pending` waiting; more are left to the next run) and returns at once,
    so a burst of settlements while Kafka hangs holds one thread, not one per settlement. The running call does
    the handed customers before it returns; after a failure it gives them up (logged, the next run does them)
    rather than hold its thread for each in turn."""

    def __init__(self, settings: Settings, sf: sessionmaker, sink_factory: Callable[[Settings], Sink] | None = None,
                 timeout: float = 30.0, max_pending: int = 1000) -> None:  # fmt: skip
        self.settings, self.sf, self.timeout, self.max_pending = settings, sf, timeout, max_pending
        self.sink_factory = sink_factory or (lambda s: KafkaSink(s, self.timeout))
        self._sink: Sink | None = None
        self._lock = threading.Lock()  # held by the call at work; never waited for
        self._pending: dict[tuple[str, str], datetime] = {}  # customers to do, with when each settled
        self._pending_lock = threading.Lock()  # held only to add or take one
        self.failures = 0
        self.given_up = 0  # customers left to the next run without a try (a failure, or too many waiting)

    def __call__(self, tenant: str, customer: str, now: datetime | None = None) -> DunningResult | None:
        """The customer's reactivation if due now, done by this call; None when it failed (logged; the next run
        does it) or was handed to the call at work (which does it before it returns)."""
        key = (tenant, customer)
        with self._pending_lock:
            if key not in self._pending and len(self._pending) >= self.max_pending:
                self.given_up += 1
                log.warning("dunning: reactivation of %s/%s after a settlement left to the next run (%d waiting)",
                            tenant, customer, len(self._pending))  # fmt: skip
                return None
            self._pending.setdefault(key, now or datetime.now(UTC))
        mine: DunningResult | None = None
        while self._lock.acquire(blocking=False):
            try:
                while (item := self._take()) is not None:
                    result = self._one(*item)
                    if item[:2] == key:
                        mine = result
                    if result is None:
                        self._give_up_pending()
            finally:
                self._lock.release()
            with self._pending_lock:  # handed over after the last take, before the release: do it too
                if not self._pending:
                    break
        return mine

    def _take(self) -> tuple[str, str, datetime] | None:
        with self._pending_lock:
            if not self._pending:
                return None
            key = next(iter(self._pending))
            return (*key, self._pending.pop(key))

    def _give_up_pending(self) -> None:
        with self._pending_lock:
            left, self._pending = list(self._pending), {}
        if left:
            self.given_up += len(left)
            log.warning("dunning: reactivation of %s after a settlement left to the next run (Kafka failed)",
                        ", ".join(f"{t}/{c}" for t, c in left))  # fmt: skip

    def _one(self, tenant: str, customer: str, now: datetime) -> DunningResult | None:
        try:
            planned = plan_reactivation(self.sf, tenant, customer, now.date(), now)
            if not planned:
                return DunningResult()
            if self._sink is None:
                self._sink = self.sink_factory(self.settings)
            result = apply_planned(self.sf, planned, self._sink, now, DunningResult())
        except Exception as exc:  # Kafka down, the store unreachable: the next collections run reactivates
            self.failures += 1
            self._drop_sink()
            log.warning("dunning: reactivation of %s/%s after a settlement left to the next run (%s)", tenant,
                        customer, exc)  # fmt: skip
            return None
        for step in result.steps:
            log.info("dunning: %s %s %s %s (settled)", step["tenant"], step["customer"], step["invoice"],
                     step["step"])  # fmt: skip
        return result

    def _drop_sink(self) -> None:
        """A sink that failed once may keep failing (a timed-out flush's messages fail later, its tracker keeps
        the errors): close it; the next call makes a fresh one."""
        sink, self._sink = self._sink, None
        close = getattr(sink, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # closing a broken sink: nothing more to do
                log.warning("dunning: closing the Kafka sink failed (%s)", exc)


def dunning_for_run(settings: Settings, sf: sessionmaker, today: date, publish: bool) -> DunningResult:
    """The billing run's collections step: Kafka only when the run publishes (and only when something is due)."""
    if publish and plan(sf, today):
        return run_dunning(sf, today, KafkaSink(settings))
    return run_dunning(sf, today, None)


def main_dunning(settings: Settings, dry_run: bool = False, as_json: bool = False, publish: bool = True) -> int:
    """`meterstream billing dunning [--dry-run] [--json] [--no-publish]`: one collections run, today in UTC.
    0 done; 1 Kafka or the store failed (the message says which; nothing was logged, the next run retries)."""
    import sys

    from meterstream.invoice_emitter.store_plans import StoreView

    sf = StoreView.open(settings).sf
    today = datetime.now(UTC).date()
    try:
        if dry_run:
            result = run_dunning(sf, today, None, dry_run=True)
        else:
            result = dunning_for_run(settings, sf, today, publish)
    except Exception as exc:  # Kafka down, the store unreachable
        print(json.dumps({"error": "failed", "message": str(exc)}) if as_json else f"error: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(result.to_json()))
    else:
        print(result.describe())
        for step in result.steps:
            fee = f" {step['late_fee']}" if "late_fee" in step else ""
            print(f"  {step['due_on']} {step['tenant']}/{step['customer']} {step['invoice']}: {step['step']}{fee}")
    return 0
