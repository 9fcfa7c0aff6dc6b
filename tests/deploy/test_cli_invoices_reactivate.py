"""`meterstream payments record`, `invoices void` and `credit-notes create` reactivate a customer suspended by
dunning at once (deploy/cli_invoices._reactivate -> invoice_emitter/dunning_run.OnSettled, as the API's twins do),
and never fail the command when Kafka does.

By hand: tenant policy "one reminder 3 days after the due date, then suspend the day after it"; customers c1, c2,
c3 with one invoice each (tests/api/finance_helpers.store_invoice: 1234.56 USD + 89.51 tax = 1324.07), due
2026-10-15. The collections run of 10-19 suspends all three. Then c1 pays its 1324.07, c2's invoice is voided and
c3's is credited in full (a credit note without --line): each command puts `reactivate` (reason invoice_overdue)
for its customer on the provisioning topic, with no collections run, and says so.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finance_helpers import store_invoice
from kafka_helpers import read_from_start

from meterstream.billing.dunning import Policy
from meterstream.deploy.cli import main
from meterstream.entities import dunning
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.invoice_emitter import dunning_run
from meterstream.invoice_emitter.dunning_run import KafkaSink, run_dunning
from meterstream.schemas.provisioning import PROVISIONING, decode_command
from meterstream.schemas.settings import Settings

T = "acme"
NOW = datetime(2026, 10, 19, 9, tzinfo=UTC)


def _store(monkeypatch: pytest.MonkeyPatch, home: Path, customers: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """The SQL store of METERSTREAM_HOME: the tenant's policy and one overdue invoice per customer (inv-<c>)."""
    monkeypatch.setenv("METERSTREAM_HOME", str(home))
    monkeypatch.delenv("METERSTREAM_DATABASE_URL", raising=False)
    settings = Settings()
    engine = make_engine(settings)
    migrate(settings, engine)
    sf = session_factory(engine)
    dunning.put_policy(sf, T, None, Policy(reminder_days=(3,), suspend_after_last=True))
    for c in customers:
        store_invoice(sf, T, f"inv-{c}", c, issue_date=date(2026, 10, 1), due_date=date(2026, 10, 15))
    return engine, sf


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.kafka
def test_payment_void_and_credit_note_reactivate_at_once(
    kafka_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"cli-{uuid.uuid4().hex[:10]}."
    monkeypatch.setenv("METERSTREAM_KAFKA_BOOTSTRAP", kafka_settings.bootstrap)
    monkeypatch.setenv("METERSTREAM_TOPIC_PREFIX", prefix)
    engine, sf = _store(monkeypatch, tmp_path / "home", ("c1", "c2", "c3"))
    settings = Settings()
    assert _run(capsys, "invoices", "mark-overdue", "--tenant", T, "--today", "2026-10-19")[0] == 0
    run = run_dunning(sf, date(2026, 10, 19), KafkaSink(settings), now=NOW)
    assert (run.reminders, run.suspended, run.reactivated) == (3, 3, 0)

    code, out, err = _run(capsys, "payments", "record", "--tenant", T, "--invoice", "inv-c1", "--amount", "1324.07",
                          "--currency", "USD", "--paid-at", "2026-10-20", "--reference", "bank-1")  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[-1] == "reactivated acme/c1 (suspended for inv-c1, now settled)"
    code, out, err = _run(capsys, "invoices", "void", "inv-c2", "--tenant", T, "--reason", "billed twice")
    assert code == 0, err
    assert out.splitlines()[-1] == "reactivated acme/c2 (suspended for inv-c2, now settled)"
    code, out, err = _run(capsys, "credit-notes", "create", "--tenant", T, "--invoice", "inv-c3", "--reason",
                          "service not delivered", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["total"] == "1324.07"  # stdout keeps the one JSON object; the news goes to stderr
    assert "reactivated acme/c3 (suspended for inv-c3, now settled)" in err.splitlines()

    messages = read_from_start(settings, settings.topic(PROVISIONING), 6, polls=50, beyond=True)
    commands = [decode_command(m.value()) for m in messages]
    assert sorted((c.customer, c.command, c.reason) for c in commands) == [
        (c, cmd, "invoice_overdue") for c in ("c1", "c2", "c3") for cmd in ("reactivate", "suspend")]  # fmt: skip
    causes = {c.customer: c.cause for c in commands if c.command == "reactivate"}
    assert causes == {"c1": "invoice ACME-2026-000001 paid", "c2": "invoice ACME-2026-000002 voided",
                      "c3": "invoice ACME-2026-000003 paid"}  # fmt: skip
    # paying again (the same reference): nothing more to reactivate, nothing said
    code, out, _ = _run(capsys, "payments", "record", "--tenant", T, "--invoice", "inv-c1", "--amount", "1324.07",
                        "--currency", "USD", "--paid-at", "2026-10-20", "--reference", "bank-1")  # fmt: skip
    assert code == 0 and "reactivated" not in out
    engine.dispose()


class _Sink:
    """A Kafka sink that keeps what it is sent (or fails on flush, as a broker that does not answer)."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.fail = fail

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, value))

    def flush(self) -> None:
        if self.fail:
            raise RuntimeError("broker 127.0.0.1:1 did not answer")


def test_a_kafka_failure_is_a_warning_and_the_next_run_reactivates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine, sf = _store(monkeypatch, tmp_path / "home", ("c1",))
    assert _run(capsys, "invoices", "mark-overdue", "--tenant", T, "--today", "2026-10-19")[0] == 0
    assert run_dunning(sf, date(2026, 10, 19), _Sink(), now=NOW).suspended == 1
    monkeypatch.setattr(dunning_run, "KafkaSink", lambda settings, timeout: _Sink(fail=True))

    pay = ("payments", "record", "--tenant", T, "--invoice", "inv-c1", "--amount", "1324.07", "--currency", "USD",
           "--paid-at", "2026-10-20", "--reference", "bank-1", "--json")  # fmt: skip
    code, out, err = _run(capsys, *pay)
    assert code == 0  # the money is recorded whatever Kafka does
    assert json.loads(out)["allocations"][0]["amount"] == "1324.07"
    assert "meterstream payments: warning: acme/c1 not reactivated now" in err
    with sf() as s:  # nothing logged as done: still suspended for its invoice
        assert {k: list(v) for k, v in dunning.open_suspensions(s, T, "c1").items()} == {(T, "c1"): ["inv-c1"]}

    later = _Sink()
    run = run_dunning(sf, date(2026, 10, 21), later, now=datetime(2026, 10, 21, 9, tzinfo=UTC))
    assert run.reactivated == 1
    (reactivate,) = [decode_command(v) for topic, v in later.sent if topic == PROVISIONING]
    got = (reactivate.customer, reactivate.command, reactivate.cause)
    assert got == ("c1", "reactivate", "invoice ACME-2026-000001 paid")
    engine.dispose()


def test_an_unreachable_kafka_costs_the_command_a_few_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listens on 127.0.0.1:9: the payment that settles c1's suspension is recorded, the reactivation is a
    warning and the command ends within 10 s (the API's 30 s per Kafka step made it about 30 s)."""
    monkeypatch.setenv("METERSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    engine, sf = _store(monkeypatch, tmp_path / "home", ("c1",))
    assert _run(capsys, "invoices", "mark-overdue", "--tenant", T, "--today", "2026-10-19")[0] == 0
    assert run_dunning(sf, date(2026, 10, 19), _Sink(), now=NOW).suspended == 1
    started = time.monotonic()
    code, out, err = _run(capsys, "payments", "record", "--tenant", T, "--invoice", "inv-c1", "--amount", "1324.07",
                          "--currency", "USD", "--paid-at", "2026-10-20", "--reference", "bank-1")  # fmt: skip
    took = time.monotonic() - started
    assert code == 0 and "meterstream payments: warning: acme/c1 not reactivated now" in err
    assert took < 10, f"the command took {took:.1f} s"
    assert "reactivated" not in out
    with sf() as s:  # still suspended: the next collections run reactivates
        assert {k: list(v) for k, v in dunning.open_suspensions(s, T, "c1").items()} == {(T, "c1"): ["inv-c1"]}
    engine.dispose()
