"""Reactivation at once when money settles a dunning suspension (invoice_emitter/dunning_run.OnSettled, the collections
run's own reactivation step for one customer), on SQLite and PostgreSQL, with a sink that keeps the messages.

By hand (policy: one reminder 3 days after the due date, then suspend the day after it): c1's invoice of 100.00
EUR due 2026-10-15 (ACME-2026-000001) is reminded on 10-18 and suspended for on 10-19. A payment of 60.00 leaves
40.00 due: no reactivation. The remaining 40.00 settles it: one `reactivate` (reason invoice_overdue, id
`dunning:acme:c1:reactivate:inv-1`, cause "invoice ACME-2026-000001 paid") and one `dunning.reactivated`
notification, at once; calling again, or the next collections run, does nothing more. c2 (suspended for its own
invoice) is not touched by c1's payment; its invoice voided reactivates it ("... voided"); c3's invoice settled
by a full credit note reactivates it ("... paid": nothing is due). A sink that fails logs nothing: the next
collections run reactivates as before.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest

from meterstream.billing.dunning import Policy
from meterstream.entities.credit_notes import create_credit_note
from meterstream.entities.customers import put_customer
from meterstream.entities.dunning import customer_state, list_log, put_policy
from meterstream.entities.invoices import finalize, mark_overdue, upsert_draft, void
from meterstream.entities.payments import record_payment
from meterstream.invoice_emitter.dunning_run import OnSettled, run_dunning
from meterstream.schemas.entities import CustomerDoc
from meterstream.schemas.provisioning import NOTIFICATIONS, PROVISIONING, decode_command, decode_notification
from meterstream.schemas.settings import Settings

T = "acme"
NOW = datetime(2026, 10, 20, 9, 30, tzinfo=UTC)


class Kept:
    """A sink keeping what it was sent once flushed (`fail`: flush raises, as Kafka down would)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.queued: list[tuple[str, bytes, bytes]] = []
        self.sent: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.queued.append((topic, key, value))

    def flush(self) -> None:
        if self.fail:
            raise RuntimeError("dunning: messages not delivered to Kafka: broker down")
        self.sent += self.queued
        self.queued = []


def _suspended(sf, customers: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Each customer with one invoice of 100.00 EUR due 2026-10-15 (inv-1, inv-2...), suspended on 10-19."""
    put_policy(sf, T, None, Policy((3,), suspend_after_last=True))
    for n, c in enumerate(customers, start=1):
        put_customer(sf, CustomerDoc(tenant=T, external_id=c, name=c, version=0, currency="EUR"))
        upsert_draft(sf, tenant=T, invoice_id=f"inv-{n}", customer=c, period="2026-09", currency="EUR",
                     total="100.00", issue_date=date(2026, 10, 1), due_date=date(2026, 10, 15),
                     document=b'{"lines": []}')  # fmt: skip
        finalize(sf, T, f"inv-{n}", "ACME", at=datetime(2026, 10, 1, tzinfo=UTC))
    day = date(2026, 10, 16)
    while day <= date(2026, 10, 19):
        mark_overdue(sf, day)
        run_dunning(sf, day, None)
        day += timedelta(days=1)
    assert [customer_state(sf, T, c).suspended_for for c in customers] == [[f"inv-{n}"] for n in
                                                                          range(1, len(customers) + 1)]  # fmt: skip


def _hook(sf, sink: Kept) -> OnSettled:  # type: ignore[no-untyped-def]
    return OnSettled(Settings(), sf, sink_factory=lambda _settings: sink)


def _pay(sf, amount: str, reference: str, invoice_id: str = "inv-1") -> None:  # type: ignore[no-untyped-def]
    record_payment(sf, T, amount=amount, currency="EUR", paid_on=date(2026, 10, 20), reference=reference,
                   invoice_id=invoice_id)  # fmt: skip


def test_the_payment_that_settles_reactivates_at_once_and_once(sf) -> None:  # type: ignore[no-untyped-def]
    _suspended(sf, ["c1", "c2"])
    sink = Kept()
    hook = _hook(sf, sink)
    _pay(sf, "60.00", "p1")
    done = hook(T, "c1", NOW)
    assert done is not None and done.reactivated == 0 and sink.sent == []  # 40.00 still due
    assert customer_state(sf, T, "c1").suspended_for == ["inv-1"]

    _pay(sf, "40.00", "p2")
    done = hook(T, "c1", NOW)
    assert done is not None and done.reactivated == 1
    assert [(topic, key) for topic, key, _ in sink.sent] == [(PROVISIONING, b"acme\x1fc1"), (NOTIFICATIONS,
                                                                                            b"acme\x1fc1")]  # fmt: skip
    command = decode_command(sink.sent[0][2])
    assert (command.id, command.command, command.reason, command.cause) == (
        "dunning:acme:c1:reactivate:inv-1",
        "reactivate",
        "invoice_overdue",
        "invoice ACME-2026-000001 paid",
    )
    assert command.state == {"invoices": ["inv-1"], "numbers": ["ACME-2026-000001"], "amount_due": "0"}
    assert command.at == "2026-10-20T09:30:00.000000Z"  # webhooks/events.rfc3339, as the run writes it
    note = decode_notification(sink.sent[1][2])
    assert (note.id, note.kind, note.data["due_on"]) == (command.id, "dunning.reactivated", "2026-10-20")
    assert customer_state(sf, T, "c1").suspended_for == []
    assert customer_state(sf, T, "c2").suspended_for == ["inv-2"]  # another customer's suspension stays

    # once: the same call again, then the next collections run, do nothing more for c1
    again = hook(T, "c1", NOW)
    assert again is not None and again.reactivated == 0 and len(sink.sent) == 2
    mark_overdue(sf, date(2026, 10, 21))
    assert [s["customer"] for s in run_dunning(sf, date(2026, 10, 21), None).steps if s["step"] == "reactivate"] == []
    assert [e.step for e in list_log(sf, T, "c1")] == ["reminder:1", "suspend", "reactivate"]


def test_void_and_full_credit_note_reactivate(sf) -> None:  # type: ignore[no-untyped-def]
    _suspended(sf, ["c1", "c2", "c3"])
    sink = Kept()
    hook = _hook(sf, sink)
    void(sf, T, "inv-2", "issued in error")
    assert hook(T, "c2", NOW).reactivated == 1  # type: ignore[union-attr]
    create_credit_note(sf, T, "inv-3", "service not delivered", None, issue_date=date(2026, 10, 20))
    assert hook(T, "c3", NOW).reactivated == 1  # type: ignore[union-attr]
    commands = [decode_command(v) for topic, _, v in sink.sent if topic == PROVISIONING]
    assert [(c.customer, c.command, c.cause) for c in commands] == [
        ("c2", "reactivate", "invoice ACME-2026-000002 voided"),
        ("c3", "reactivate", "invoice ACME-2026-000003 paid"),
    ]
    assert customer_state(sf, T, "c1").suspended_for == ["inv-1"]


def test_a_failing_sink_logs_nothing_and_the_next_run_reactivates(sf) -> None:  # type: ignore[no-untyped-def]
    _suspended(sf, ["c1"])
    down = Kept(fail=True)
    hook = _hook(sf, down)
    _pay(sf, "100.00", "p1")
    assert hook(T, "c1", NOW) is None and hook.failures == 1  # the payment stands; nothing logged as done
    assert customer_state(sf, T, "c1").suspended_for == ["inv-1"]
    up = Kept()
    result = run_dunning(sf, date(2026, 10, 20), up)
    assert [(s["customer"], s["step"]) for s in result.steps] == [("c1", "reactivate")]
    assert decode_command(up.sent[0][2]).id == "dunning:acme:c1:reactivate:inv-1"  # the id the hook would send


@pytest.mark.parametrize("customer", ["nobody", "c1"])
def test_a_customer_not_suspended_opens_no_sink(sf, customer: str) -> None:  # type: ignore[no-untyped-def]
    put_customer(sf, CustomerDoc(tenant=T, external_id="c1", name="c1", version=0, currency="EUR"))
    made: list[Settings] = []

    def factory(settings: Settings) -> Kept:
        made.append(settings)
        return Kept()

    done = OnSettled(Settings(), sf, sink_factory=factory)(T, customer, NOW)
    assert done is not None and done.steps == [] and made == []  # no Kafka connection for nothing to send


class FailsOnce(Kept):
    """A sink whose first flush fails (Kafka down), then works; `closed` when OnSettled gives it up."""

    def __init__(self) -> None:
        super().__init__(fail=True)
        self.closed = False

    def flush(self) -> None:
        try:
            super().flush()
        finally:
            self.fail = False

    def close(self) -> None:
        self.closed = True


def test_after_a_kafka_failure_the_next_settlement_uses_a_fresh_sink(sf) -> None:  # type: ignore[no-untyped-def]
    """A sink that failed once is closed and dropped: c1's settlement fails (still suspended), c2's next one
    reactivates through a new sink, and so does c1's retry (the kept sink would raise again, its errors kept)."""
    _suspended(sf, ["c1", "c2"])
    made: list[Kept] = []

    def factory(_settings: Settings) -> Kept:
        made.append(FailsOnce() if not made else Kept())
        return made[-1]

    hook = OnSettled(Settings(), sf, sink_factory=factory)
    _pay(sf, "100.00", "p1")
    assert hook(T, "c1", NOW) is None and hook.failures == 1
    assert customer_state(sf, T, "c1").suspended_for == ["inv-1"]
    assert made[0].closed  # type: ignore[attr-defined]

    _pay(sf, "100.00", "p2", invoice_id="inv-2")
    assert hook(T, "c2", NOW).reactivated == 1  # type: ignore[union-attr]
    assert hook(T, "c1", NOW).reactivated == 1  # type: ignore[union-attr]
    assert len(made) == 2 and made[0].sent == []
    assert [(c.customer, c.command) for c in (decode_command(v) for t, _, v in made[1].sent if t == PROVISIONING)] == [
        ("c2", "reactivate"),
        ("c1", "reactivate"),
    ]
    assert [customer_state(sf, T, c).suspended_for for c in ("c1", "c2")] == [[], []]


class Blocking(Kept):
    """A sink whose flush waits for `go` (a broker that does not answer yet)."""

    def __init__(self) -> None:
        super().__init__()
        self.flushing, self.go = threading.Event(), threading.Event()

    def flush(self) -> None:
        self.flushing.set()
        assert self.go.wait(10)
        super().flush()


def test_settlements_while_one_is_blocked_return_at_once(sf) -> None:  # type: ignore[no-untyped-def]
    """While c1's flush hangs, c2's and c3's settlements do not wait for it: each call returns at once (None: handed
    over), and the blocked call does them when its flush returns: three reactivations, one thread busy."""
    _suspended(sf, ["c1", "c2", "c3"])
    sink = Blocking()
    hook = _hook(sf, sink)
    for n in (1, 2, 3):
        _pay(sf, "100.00", f"p{n}", invoice_id=f"inv-{n}")
    first: list[object] = []
    worker = threading.Thread(target=lambda: first.append(hook(T, "c1", NOW)))
    worker.start()
    assert sink.flushing.wait(10)
    started = time.monotonic()
    assert hook(T, "c2", NOW) is None and hook(T, "c3", NOW) is None
    assert time.monotonic() - started < 0.5  # did not wait on the blocked flush (it waits up to 10 s)
    assert [customer_state(sf, T, c).suspended_for for c in ("c1", "c2", "c3")] == [["inv-1"], ["inv-2"], ["inv-3"]]
    sink.go.set()
    worker.join(10)
    assert not worker.is_alive() and first[0].reactivated == 1  # type: ignore[attr-defined]
    assert [decode_command(v).customer for t, _, v in sink.sent if t == PROVISIONING] == ["c1", "c2", "c3"]
    assert [customer_state(sf, T, c).suspended_for for c in ("c1", "c2", "c3")] == [[], [], []]
    assert hook.failures == 0 and hook.given_up == 0


def test_a_failure_gives_up_the_handed_customers_and_too_many_waiting(sf) -> None:  # type: ignore[no-untyped-def]
    """c1's flush hangs then fails: c2, handed to it, is left to the next run rather than tried after (one thread
    is not held for each); with max_pending 1, c3 arriving while c2 waits is given up at once."""
    _suspended(sf, ["c1", "c2", "c3"])
    sink = Blocking()
    sink.fail = True
    hook = OnSettled(Settings(), sf, sink_factory=lambda _s: sink, max_pending=1)
    for n in (1, 2, 3):
        _pay(sf, "100.00", f"p{n}", invoice_id=f"inv-{n}")
    worker = threading.Thread(target=hook, args=(T, "c1", NOW))
    worker.start()
    assert sink.flushing.wait(10)
    assert hook(T, "c2", NOW) is None and hook(T, "c3", NOW) is None and hook.given_up == 1  # c3
    sink.go.set()
    worker.join(10)
    assert not worker.is_alive() and hook.failures == 1 and hook.given_up == 2  # c2 too
    assert [customer_state(sf, T, c).suspended_for for c in ("c1", "c2", "c3")] == [["inv-1"], ["inv-2"], ["inv-3"]]
    result = run_dunning(sf, date(2026, 10, 20), Kept())  # the next run reactivates all three
    assert sorted(s["customer"] for s in result.steps if s["step"] == "reactivate") == ["c1", "c2", "c3"]
