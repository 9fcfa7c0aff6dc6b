"""A payment recorded through the API reactivates a customer suspended by dunning at once, on the real broker
(the app as `meterstream serve` runs it: its own Kafka connection and outbox relay), on SQLite and PostgreSQL.

By hand: customer c1, tenant policy "one reminder 3 days after the due date, then suspend the day after it";
invoice inv-1 of 100.00 EUR due 2026-10-15 (number ACME-2026-000001). The collections run of 10-19 (late: it does
both steps) sends the reminder (due 10-18) and the suspension (due 10-19). POST /v1/payments of 100.00 for inv-1
then puts `reactivate` (reason invoice_overdue) on the provisioning topic right after `suspend`, keyed by the
customer, and `dunning.reactivated` on the notifications topic; no collections run is needed. A second customer's
full credit note through POST /v1/credit_notes does the same for it. Repeating the payment (same reference) sends
nothing more.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import pytest
from kafka_helpers import read_from_start

from meterstream.entities.invoices import finalize, upsert_draft
from meterstream.schemas.provisioning import decode_command, decode_notification
from meterstream.schemas.settings import Settings

pytestmark = pytest.mark.kafka
PAYMENT = {"invoice_id": "inv-1", "amount": "100.00", "currency": "EUR", "paid_at": "2026-10-20", "reference": "bank-1"}


def _invoice(sf, invoice_id: str, customer: str) -> None:  # type: ignore[no-untyped-def]
    upsert_draft(sf, tenant="acme", invoice_id=invoice_id, customer=customer, period="2026-09", currency="EUR",
                 total="100.00", issue_date=date(2026, 10, 1), due_date=date(2026, 10, 15),
                 document=b'{"lines": []}')  # fmt: skip
    finalize(sf, "acme", invoice_id, "ACME", at=datetime(2026, 10, 1, tzinfo=UTC))


def test_a_payment_through_the_api_reactivates_at_once(  # type: ignore[no-untyped-def]
    make_client, suspend_c1_c2, api_settings: Settings, fresh_url: str
) -> None:
    settings = api_settings.model_copy(update={"database_url": fresh_url})
    client = make_client(settings)
    assert client.app.state.relay is not None  # the app owns its Kafka connection, as `meterstream serve`
    admin = suspend_c1_c2(client, settings, "EUR", _invoice)

    started = time.monotonic()
    paid = client.post("/v1/payments", json=PAYMENT, headers=admin)
    assert paid.status_code == 201, paid.text
    provisioning = settings.topic("provisioning")
    messages = read_from_start(settings, provisioning, 3, polls=50)  # suspend c1, suspend c2, reactivate c1
    elapsed = time.monotonic() - started
    commands = [(m.key(), decode_command(m.value())) for m in messages]
    c1 = [(c.command, c.reason) for key, c in commands if key == b"acme\x1fc1"]
    assert c1 == [("suspend", "invoice_overdue"), ("reactivate", "invoice_overdue")]  # in order, one partition
    (reactivate,) = [c for _, c in commands if c.command == "reactivate"]
    assert (reactivate.id, reactivate.cause, reactivate.state["amount_due"]) == (
        "dunning:acme:c1:reactivate:inv-1",
        "invoice ACME-2026-000001 paid",
        "0",
    )
    state = client.get("/v1/customers/c1/dunning", headers=admin).json()
    assert (state["suspended"], [s["step"] for s in state["steps"]]) == (False, ["reminder:1", "suspend",
                                                                                  "reactivate"])  # fmt: skip
    assert client.get("/v1/customers/c2/dunning", headers=admin).json()["suspended_for"] == ["inv-2"]

    # the same payment again (same reference): 200, nothing more on the topic
    again = client.post("/v1/payments", json=PAYMENT, headers=admin)
    assert again.status_code == 200
    # c2's invoice settled by a full credit note
    note = client.post("/v1/credit_notes", json={"invoice_id": "inv-2", "reason": "service not delivered",
                                                 "lines": None}, headers=admin)  # fmt: skip
    assert note.status_code == 201, note.text
    after = [decode_command(m.value()) for m in read_from_start(settings, provisioning, 4, polls=50, beyond=True)]
    assert sorted((c.customer, c.command) for c in after) == [("c1", "reactivate"), ("c1", "suspend"),
                                                              ("c2", "reactivate"), ("c2", "suspend")]  # fmt: skip
    notes = [decode_notification(m.value()) for m in read_from_start(settings, settings.topic("notifications"), 6,
                                                                      polls=50)]  # fmt: skip
    assert sorted(n.kind for n in notes) == ["dunning.reactivated"] * 2 + ["dunning.reminder"] * 2 + [
        "dunning.suspended"] * 2  # fmt: skip
    print(f"\npayment answered and reactivate readable on the topic after {elapsed * 1000:.0f} ms")
