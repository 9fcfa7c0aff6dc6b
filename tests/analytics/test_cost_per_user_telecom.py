"""Issue #17 G1: `cost_per_user` (aggregation/views.py) covers a telecom customer's lines and its late-usage
adjustment lines, so a customer's per-user amounts add up exactly to each invoice line and to the invoice total.
Closed for real on the embedded ClickHouse (tests/invoice_emitter/telco_usage.py: national calls 60/60 at 0.10 per
minute, SMS 0.09); figures worked by hand."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

from by_path import load

from meterstream.aggregation.ddl import create_schema
from meterstream.invoice_emitter.close import close_period

telco = load("tests/invoice_emitter/telco_usage.py")
D = Decimal


def test_cost_per_user_adds_up_to_a_telecom_invoice_and_its_late_usage(chdb_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = f"cpu_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    out = tmp_path / "inv"
    # October: alice 61 s (2 min, 0.20), bob 200 s (4 min, 0.40), bob one SMS (0.09), one SMS without subject
    telco.insert(chdb_client, db, "2026-10", [("alice", "voice_seconds", "61", "0.2"),
                                              ("bob", "voice_seconds", "200", "0.4"),
                                              ("bob", "sms", "1", "0.09"), ("", "sms", "1", "0.09")])  # fmt: skip
    close_period(chdb_client, db, telco.CATALOG, "2026-10", out, progress=False)
    # late for October, billed in November: alice 31 s and carol 45 s (1 minute each: +0.20); and November's own
    # alice SMS (0.09)
    telco.insert(chdb_client, db, "2026-10", [("alice", "voice_seconds", "31", "0.1"),
                                              ("carol", "voice_seconds", "45", "0.1")])  # fmt: skip
    telco.insert(chdb_client, db, "2026-11", [("alice", "sms", "1", "0.09")])
    close_period(chdb_client, db, telco.CATALOG, "2026-11", out, progress=False)

    rows = chdb_client.query(
        f"SELECT period, kind, meter, applies_to, subject, quantity, amount, line_amount FROM {db}.cost_per_user "
        "WHERE tenant = 'telco' ORDER BY period, line_no, subject"
    ).result_rows
    assert [tuple(r) for r in rows] == [
        # sms line first (line keys sorted): 18 cents by 1 : 1, 9 each; voice: 60 cents by 61 : 200 -> 14, 46
        ("2026-10", "usage", "sms", "", "(no subject)", D(1), D("0.09"), D("0.18")),
        ("2026-10", "usage", "sms", "", "bob", D(1), D("0.09"), D("0.18")),
        ("2026-10", "usage", "voice_seconds", "", "alice", D(61), D("0.14"), D("0.60")),
        ("2026-10", "usage", "voice_seconds", "", "bob", D(200), D("0.46"), D("0.60")),
        # November: its SMS, then October's late usage: 20 cents by 31 : 45 -> 8.16, 11.84 -> 8, 12
        ("2026-11", "usage", "sms", "", "alice", D(1), D("0.09"), D("0.09")),
        ("2026-11", "adjustment", "voice_seconds", "2026-10", "alice", D(31), D("0.08"), D("0.20")),
        ("2026-11", "adjustment", "voice_seconds", "2026-10", "carol", D(45), D("0.12"), D("0.20")),
    ]
    # per invoice, the users' amounts add up to its total
    totals = chdb_client.query(
        f"SELECT i.period, i.total, c.shared FROM {db}.invoices AS i FINAL JOIN (SELECT period, sum(amount) AS shared "
        f"FROM {db}.cost_per_user WHERE tenant = 'telco' GROUP BY period) AS c ON c.period = i.period "
        "WHERE i.tenant = 'telco' ORDER BY i.period"
    ).result_rows
    assert [tuple(r) for r in totals] == [("2026-10", D("0.78"), D("0.78")), ("2026-11", D("0.29"), D("0.29"))]
