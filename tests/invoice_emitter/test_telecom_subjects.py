"""Issue #17 G1/G4: a catalog-file telecom customer's invoice lines and late-usage adjustment lines get per-user
shares that add up exactly to each line; the issued lines carry `streamed_amount`; a telecom adjustment carries
its billed units. Closed for real on the embedded ClickHouse; every figure worked by hand (plan: telco_usage.py,
national calls 60/60 at 0.10 per minute, SMS 0.09).

Shares: the line's amount in cents split by the subjects' quantities (real usage on the line), floors first,
the cents left to the largest remainders (billing/allocation.py).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from by_path import load

from meterstream.invoice_emitter.close import close_period
from meterstream.schemas.invoice import decode

telco = load("tests/invoice_emitter/telco_usage.py")
D = Decimal


def by_key(result) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    (doc,) = result.invoices
    return {line["line_key"]: line for line in doc["lines"]}


def shares(line: dict) -> list[tuple[str, str, str]]:
    return [(s["subject"], s["quantity"], s["amount"]) for s in line["subjects"]]


def test_telecom_lines_are_shared_per_user_and_carry_the_streamed_amount(chdb_client, db: str, tmp_path: Path) -> None:
    # alice 61 s -> 2 minutes 0.20, bob 200 s -> 4 minutes 0.40 (streamed so); two SMS without a subject, 0.09 each
    telco.insert(chdb_client, db, "2026-10", [("alice", "voice_seconds", "61", "0.2"),
                                              ("bob", "voice_seconds", "200", "0.4"),
                                              ("", "sms", "1", "0.09"), ("", "sms", "1", "0.09")])  # fmt: skip
    result = close_period(chdb_client, db, telco.CATALOG, "2026-10", tmp_path / "inv", progress=False)
    assert result.unreconciled == []
    (doc,) = result.invoices
    assert D(doc["total"]) == D("0.78")
    lines = by_key(result)
    voice, sms = lines[telco.VOICE], lines[telco.SMS]
    assert (voice["quantity"], voice["amount"]) == ("261", "0.60")
    # 60 cents by 61 : 200 of 261 s: alice 14.02, bob 45.98 -> floors 14 + 45 = 59, the cent left to bob (.98)
    assert shares(voice) == [("alice", "61", "0.14"), ("bob", "200", "0.46")]
    # usage without a subject is "(no subject)" on a document that names subjects elsewhere
    assert shares(sms) == [("(no subject)", "2", "0.18")]
    # what the stream rated, on the issued (version 2) line: 0.2 + 0.4 and 0.09 + 0.09
    assert (D(voice["streamed_amount"]), D(sms["streamed_amount"])) == (D("0.6"), D("0.18"))
    typed = decode((tmp_path / "inv" / "2026-10" / "telco" / "sub-3.json").read_bytes())
    streamed = {line.line_key: line.streamed_amount for line in typed.lines}
    assert streamed == {telco.VOICE: D("0.6"), telco.SMS: D("0.18")}
    # and in the ledger analysts read (invoice_lines), beside the amount invoiced
    rows = chdb_client.query(
        f"SELECT line_key, amount, streamed_amount FROM {db}.invoice_lines FINAL WHERE tenant = 'telco'"
    ).result_rows
    assert {k: (D(a), D(s)) for k, a, s in rows} == {
        telco.VOICE: (D("0.60"), D("0.6")),
        telco.SMS: (D("0.18"), D("0.18")),
    }


def test_late_telecom_usage_is_shared_by_the_late_subjects_with_its_billed_units(
    chdb_client, db: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "inv"
    telco.insert(chdb_client, db, "2026-10", [("alice", "voice_seconds", "61", "0.2"),
                                              ("bob", "voice_seconds", "200", "0.4")])  # fmt: skip
    close_period(chdb_client, db, telco.CATALOG, "2026-10", out, progress=False)
    # late for October: alice 31 s (1 minute, 0.10), carol 45 s (1 minute, 0.10)
    telco.insert(chdb_client, db, "2026-10", [("alice", "voice_seconds", "31", "0.1"),
                                              ("carol", "voice_seconds", "45", "0.1")])  # fmt: skip
    nov = close_period(chdb_client, db, telco.CATALOG, "2026-11", out, progress=False)
    (adj,) = nov.invoices[0]["lines"]
    assert (adj["kind"], adj["applies_to"], adj["line_key"]) == ("adjustment", "2026-10", telco.VOICE)
    # October now 336 s billed 480 s = 0.80, billed 0.60 before: +76 s, +120 billed units, +0.20
    assert (adj["quantity"], adj["amount"], D(adj["precise_amount"])) == ("76", "0.20", D("0.2"))
    assert [(t["kind"], D(t["quantity"]), D(t["amount"])) for t in adj["tiers"]] == [("billed_units", D(120), D("0.2"))]
    # the late subjects only (bob's 200 s were billed): 20 cents by 31 : 45 -> 8.16 and 11.84: floors 8 + 11,
    # the cent left to carol (.84)
    assert shares(adj) == [("alice", "31", "0.08"), ("carol", "45", "0.12")]

    # a second late batch is shared among its own subjects: the shares billed in October and November are
    # subtracted (alice 61 + 31, bob 200, carol 45); bob 10 s more bills one minute, 0.10
    telco.insert(chdb_client, db, "2026-10", [("bob", "voice_seconds", "10", "0.1")])
    dec = close_period(chdb_client, db, telco.CATALOG, "2026-12", out, progress=False)
    (adj,) = dec.invoices[0]["lines"]
    assert (adj["quantity"], adj["amount"], D(adj["tiers"][0]["quantity"])) == ("10", "0.10", D(60))
    assert shares(adj) == [("bob", "10", "0.10")]
