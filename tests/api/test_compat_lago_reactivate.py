"""A void or a credit note through the Lago API reactivates a customer suspended by dunning at once, as /v1 does
(api/routes/invoices.reactivate_after), on the real broker (the app as `meterstream serve` runs it: its own Kafka
connection and outbox relay).

By hand: tenant policy "one reminder 3 days after the due date, then suspend the day after it"; customers c1 and
c2 with one invoice each (tests/api/finance_helpers.store_invoice: 1000.00 + 72.50 tax and 234.56 + 17.01 tax =
1324.07 USD), due 2026-10-15, numbered ACME-2026-000001 (inv-1, c1) and ACME-2026-000002 (inv-2, c2). The
collections run of 10-19 suspends both. POST /compat/lago/api/v1/invoices/inv-1/void puts `reactivate` (reason
invoice_overdue, cause "... voided") for c1 on the provisioning topic, and POST /compat/lago/api/v1/credit_notes
crediting both fees of inv-2 in full (107250 + 25157 = 132407 cents, all that is due) does it for c2 (cause
"... paid": nothing is due any more), each without a collections run. A second credit note is refused (nothing
left to credit) and sends nothing more.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from finance_helpers import store_invoice
from kafka_helpers import read_from_start

from meterstream.schemas.provisioning import decode_command
from meterstream.schemas.settings import Settings

pytestmark = pytest.mark.kafka
LAGO = "/compat/lago/api/v1"


def test_a_lago_void_and_credit_note_reactivate_at_once(make_client, suspend_c1_c2, api_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    client = make_client(api_settings)
    assert client.app.state.relay is not None  # the app owns its Kafka connection, as `meterstream serve`

    def invoice(sf, invoice_id: str, customer: str) -> None:  # type: ignore[no-untyped-def]
        store_invoice(sf, "acme", invoice_id, customer, issue_date=date(2026, 10, 1), due_date=date(2026, 10, 15))

    admin = suspend_c1_c2(client, api_settings, "USD", invoice, now=datetime(2026, 10, 19, 9, tzinfo=UTC))
    provisioning = api_settings.topic("provisioning")

    voided = client.post(f"{LAGO}/invoices/inv-1/void", headers=admin)
    assert voided.status_code == 200, voided.text
    assert (voided.json()["invoice"]["status"], voided.json()["invoice"]["number"]) == ("voided", "ACME-2026-000001")
    messages = read_from_start(api_settings, provisioning, 3, polls=50)  # suspend c1, suspend c2, reactivate c1
    commands = [(m.key(), decode_command(m.value())) for m in messages]
    c1 = [(c.command, c.reason) for key, c in commands if key == b"acme\x1fc1"]
    assert c1 == [("suspend", "invoice_overdue"), ("reactivate", "invoice_overdue")]  # in order, one partition
    (reactivate,) = [c for _, c in commands if c.command == "reactivate"]
    assert (reactivate.id, reactivate.cause, reactivate.state["amount_due"]) == (
        "dunning:acme:c1:reactivate:inv-1", "invoice ACME-2026-000001 voided", "0")  # fmt: skip
    assert client.get("/v1/customers/c2/dunning", headers=admin).json()["suspended_for"] == ["inv-2"]

    fees = client.get(f"{LAGO}/invoices/inv-2", headers=admin).json()["invoice"]["fees"]
    assert [f["total_amount_cents"] for f in fees] == [107250, 25157]  # 1000.00 + 72.50, 234.56 + 17.01
    items = [{"fee_id": f["lago_id"], "amount_cents": f["total_amount_cents"]} for f in fees]
    note = client.post(f"{LAGO}/credit_notes", json={"credit_note": {"invoice_id": "inv-2", "items": items}},
                       headers=admin)  # fmt: skip
    assert note.status_code == 200, note.text
    assert note.json()["credit_note"]["offset_amount_cents"] == 132407  # all that was due
    after = [decode_command(m.value()) for m in read_from_start(api_settings, provisioning, 4, polls=50)]
    assert sorted((c.customer, c.command) for c in after) == [("c1", "reactivate"), ("c1", "suspend"),
                                                              ("c2", "reactivate"), ("c2", "suspend")]  # fmt: skip
    (c2,) = [c for c in after if c.customer == "c2" and c.command == "reactivate"]
    assert (c2.id, c2.cause) == ("dunning:acme:c2:reactivate:inv-2", "invoice ACME-2026-000002 paid")
    state = client.get("/v1/customers/c2/dunning", headers=admin).json()
    assert (state["suspended"], [s["step"] for s in state["steps"]]) == (False, ["reminder:1", "suspend",
                                                                                  "reactivate"])  # fmt: skip

    again = client.post(f"{LAGO}/credit_notes", json={"credit_note": {"invoice_id": "inv-2", "items": items}},
                        headers=admin)  # fmt: skip
    assert again.status_code == 422, again.text
    assert len(read_from_start(api_settings, provisioning, 4, polls=15, beyond=True)) == 4  # nothing more sent
