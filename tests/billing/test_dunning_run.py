"""The collections step of the billing run (deploy/billing_run.py + invoice_emitter/dunning_run.py): on a real
broker the suspension reaches the `provisioning` topic (created by the run when missing) keyed by the customer, a re-run
sends nothing more; and the schedulers' shared child-process loop (ChildScheduler) runs, waits and stops.

Invoice of 12.00 USD due 2026-11-01, policy: reminder at +1 day and suspension the day after it (11-03)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka_helpers import read_from_start

from meterstream.billing.dunning import Policy
from meterstream.deploy.billing_run import ChildScheduler, describe, run_billing
from meterstream.schemas.provisioning import decode_command, decode_notification
from meterstream.schemas.settings import Settings

CATALOG = Path(__file__).resolve().parents[1] / "data" / "catalog.yaml"


@pytest.mark.kafka
def test_the_billing_run_sends_dunning_to_kafka_once(chdb_client, kafka_settings: Settings, tmp_path: Path) -> None:
    from meterstream.aggregation.ddl import create_schema
    from meterstream.entities import invoices
    from meterstream.entities.customers import put_customer
    from meterstream.entities.db import make_engine, migrate, session_factory
    from meterstream.entities.dunning import put_policy
    from meterstream.schemas.entities import CustomerDoc

    db = f"b_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url=url)
    migrate(engine=engine)
    sf = session_factory(engine)
    put_customer(sf, CustomerDoc(tenant="t1", external_id="c1", name="C1", version=0))
    put_policy(sf, "t1", None, Policy((1,), suspend_after_last=True))
    invoices.upsert_draft(sf, tenant="t1", invoice_id="i1", customer="c1", period="2026-10", currency="USD",
                          total="12.00", issue_date=date(2026, 11, 1), due_date=date(2026, 11, 1),
                          document=b"{}")  # fmt: skip
    invoices.finalize(sf, "t1", "i1", "DEMO")
    settings = kafka_settings.model_copy(update={
        "topic_prefix": f"d{uuid.uuid4().hex[:8]}.", "clickhouse_database": db, "catalog": CATALOG,
        "home": tmp_path / "home", "database_url": url})  # fmt: skip

    def run(now: datetime):  # type: ignore[no-untyped-def]
        return run_billing(settings, tmp_path / "inv", publish=True, now=lambda: now, client=chdb_client)

    first = run(datetime(2026, 11, 3, 2, tzinfo=UTC))
    assert first.dunning_error is None and first.exit_code == 0
    assert first.dunning is not None and (first.dunning["reminders"], first.dunning["suspended"]) == (1, 1)
    assert describe(first.to_json()) == "nothing closed; 1 invoices overdue; dunning: 1 reminders, 1 suspended"
    second = run(datetime(2026, 11, 4, 2, tzinfo=UTC))
    assert second.dunning is not None and second.dunning["steps"] == []
    (cmd,) = read_from_start(settings, settings.topic("provisioning"), 1, polls=50, beyond=True)
    command = decode_command(cmd.value())
    assert (cmd.key(), command.command, command.reason, command.state["amount_due"]) == (
        b"t1\x1fc1",
        "suspend",
        "invoice_overdue",
        "12.00",
    )
    sent = read_from_start(settings, settings.topic("notifications"), 2, polls=50, beyond=True)
    notes = [decode_notification(m.value()) for m in sent]
    assert [(n.kind, n.data["due_on"]) for n in notes] == [("dunning.reminder", "2026-11-02"),
                                                          ("dunning.suspended", "2026-11-03")]  # fmt: skip


class Counting(ChildScheduler):
    thread_name = "counting"

    def __init__(self, fail: bool = False) -> None:
        self.messages: list[str] = []
        super().__init__(self.messages.append)
        self.runs, self.fail = 0, fail

    def run_once(self) -> dict[str, Any] | None:
        self.runs += 1
        if self.fail:
            raise OSError("no such file")
        return None

    def wait_next(self) -> None:
        self.stopping.wait(0.01)


def test_the_shared_loop_runs_until_stopped_and_says_a_run_that_could_not_start() -> None:
    ok = Counting()
    ok.start()
    deadline = time.monotonic() + 5
    while ok.runs < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    ok.stop()
    assert ok.runs >= 3 and not ok.thread.is_alive()
    runs = ok.runs
    time.sleep(0.05)
    assert ok.runs == runs  # stopped: no more runs
    bad = Counting(fail=True)
    bad.start()
    while not bad.messages and time.monotonic() < deadline:
        time.sleep(0.01)
    bad.stop()
    assert bad.messages[0] == "counting: could not run (no such file)"
    assert isinstance(bad.thread, threading.Thread) and bad.thread.name == "counting"
