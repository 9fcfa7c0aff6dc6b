"""Lago one-off invoices through lago-python-client 1.55.0, unchanged, on a real uvicorn server (in-process app,
SQLite store, no broker): `add_ons.create`, `invoices.create(OneOffInvoice(...))`, the invoice and its fees as
Lago shows them (`invoice_type: one_off`, `add_on` fees), `fees.find_all(fee_type=add_on)`, the webhook Lago sends
for it (`invoice.one_off_created`) and the errors. Figures by hand in the comments."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from lago_app import make_app
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer
from lago_python_client.models.add_on import AddOn
from lago_python_client.models.invoice import InvoiceFee, InvoiceFeesList, OneOffInvoice
from lago_python_client.models.webhook_endpoint import WebhookEndpoint
from served_app import serve
from test_compat_lago_webhooks import dispatcher, drain
from webhook_receiver import Receiver

T = "t1"


@pytest.fixture
def lago(tmp_path: Path):  # type: ignore[no-untyped-def]
    with make_app(tmp_path) as client:
        key = client.app.state.keys.create(T, "admin", "sdk")[1]
        with serve(client.app) as base:
            sdk = Client(api_key=key, api_url=f"{base}/compat/lago/")
            sdk.customers.create(Customer(external_id="kerry", name="Kerry Brew", currency="EUR", country="DE"))
            yield sdk, client.app


def _one_off(sdk: Client, *fees: InvoiceFee, currency: str | None = "EUR"):  # type: ignore[no-untyped-def]
    return sdk.invoices.create(OneOffInvoice(external_customer_id="kerry", currency=currency,
                                             fees=InvoiceFeesList(__root__=list(fees))))  # fmt: skip


def test_a_one_off_invoice_through_the_sdk(lago) -> None:  # type: ignore[no-untyped-def]
    sdk, app = lago
    receiver = Receiver()
    try:
        sdk.webhook_endpoints.create(WebhookEndpoint(webhook_url=receiver.url, signature_algo="hmac"))
        setup = sdk.add_ons.create(AddOn(name="Setup fee", code="setup", amount_cents=15000, amount_currency="EUR"))
        sdk.add_ons.create(AddOn(name="Consulting day", code="day", amount_cents=100000, amount_currency="USD"))
        inv = _one_off(sdk, InvoiceFee(add_on_code="setup", units=2),
                       InvoiceFee(add_on_code="day", units=1.5, unit_amount_cents=90000,
                                  invoice_display_name="Workshop"), currency=None)  # the customer's: EUR  # fmt: skip
        # 2 x 150.00 = 300.00 and 1.5 x 900.00 = 1350.00: 1650.00; 19 % VAT (German buyer and issuer) 313.50
        assert (inv.invoice_type, inv.status, inv.currency, inv.number) == ("one_off", "finalized", "EUR",
                                                                            "DEMO-2026-000001")  # fmt: skip
        assert (inv.fees_amount_cents, inv.taxes_amount_cents, inv.total_amount_cents) == (165000, 31350, 196350)
        assert [(f.item.type, f.item.code, f.item.name, f.units, f.amount_cents) for f in inv.fees.__root__] == [
            ("add_on", "setup", "Setup fee", "2", 30000), ("add_on", "day", "Workshop", "1.5", 135000)]  # fmt: skip
        assert inv.fees.__root__[0].item.lago_item_id == setup.lago_id
        assert sdk.invoices.find(inv.lago_id).invoice_type == "one_off"
        listed = sdk.fees.find_all({"fee_type": "add_on"})["fees"]
        assert sorted(f.amount_cents for f in listed) == [30000, 135000]
        assert sdk.fees.find_all({"fee_type": "charge"})["fees"] == []

        drain(dispatcher(app))
        got = [orjson.loads(body) for _, body in receiver.requests]
        created = [m for m in got if m["webhook_type"] == "invoice.one_off_created"]
        assert [(m["object_type"], m["invoice"]["lago_id"], m["invoice"]["invoice_type"]) for m in created] == [
            ("invoice", inv.lago_id, "one_off")]  # fmt: skip
        assert not [m for m in got if m["webhook_type"] == "invoice.created"]  # Lago's name for a one-off
    finally:
        receiver.close()


def test_errors_as_lago_answers_them(lago) -> None:  # type: ignore[no-untyped-def]
    sdk, _app = lago
    sdk.add_ons.create(AddOn(name="Consulting day", code="day", amount_cents=100000, amount_currency="USD"))
    with pytest.raises(LagoApiError) as exc:
        _one_off(sdk, InvoiceFee(add_on_code="nothing"))
    assert (exc.value.status_code, exc.value.response["code"]) == (404, "add_on_not_found")
    with pytest.raises(LagoApiError) as exc:
        sdk.invoices.create(OneOffInvoice(external_customer_id="nobody", currency="EUR",
                                          fees=InvoiceFeesList(__root__=[InvoiceFee(add_on_code="day")])))  # fmt: skip
    assert (exc.value.status_code, exc.value.response["code"]) == (404, "customer_not_found")
    for fee, field in ((InvoiceFee(add_on_code="day"), "fees[0].unit_amount"),  # a USD add-on, a EUR invoice
                       (InvoiceFee(add_on_code="day", unit_amount_cents=100, tax_codes=["vat"]), "fees[0].tax_codes"),
                       (InvoiceFee(add_on_code="day", unit_amount_cents=100, units=0), "fees[0].units")):  # fmt: skip
        with pytest.raises(LagoApiError) as exc:
            _one_off(sdk, fee)
        body = exc.value.response
        assert (exc.value.status_code, body["code"], list(body["error_details"])) == (
            422, "validation_errors", [field])  # fmt: skip


def test_the_invoice_list_filters_as_lago_names_them(lago) -> None:  # type: ignore[no-untyped-def]
    """Lago's `invoices.find_all` filters over a subscription-style invoice (finance_helpers: 1324.07 USD, issued
    here 2020-01-15) and a one-off invoice (2 x 150.00 EUR + 19 % = 357.00, issued today)."""
    from datetime import date

    from finance_helpers import store_invoice

    sdk, app = lago
    store_invoice(app.state.sessions, T, "INV-SUB", "globex", issue_date=date(2020, 1, 15))
    sdk.add_ons.create(AddOn(name="Setup fee", code="setup", amount_cents=15000, amount_currency="EUR"))
    one_off = _one_off(sdk, InvoiceFee(add_on_code="setup", units=2))
    assert one_off.total_amount_cents == 35700

    def ids(**options: str) -> list[str]:
        return sorted(x.lago_id for x in sdk.invoices.find_all(options)["invoices"])

    assert ids() == sorted(["INV-SUB", one_off.lago_id])
    assert ids(invoice_type="one_off") == [one_off.lago_id]
    assert ids(invoice_type="subscription") == ["INV-SUB"]
    assert ids(invoice_type="progressive_billing") == []
    assert ids(currency="USD") == ["INV-SUB"]
    assert ids(issuing_date_from="2020-01-15", issuing_date_to="2020-01-15") == ["INV-SUB"]  # inclusive
    assert ids(issuing_date_from=one_off.issuing_date) == [one_off.lago_id]
    assert ids(amount_from="35700", amount_to="35700") == [one_off.lago_id]  # inclusive, in cents
    assert ids(amount_from="100000") == ["INV-SUB"]
    assert ids(search_term="kerry") == [one_off.lago_id]  # the customer's external id
    assert ids(search_term="Kerry Brew") == [one_off.lago_id]  # its name
    assert ids(payment_dispute_lost="true") == [] and ids(self_billed="false") == sorted(["INV-SUB", one_off.lago_id])
    for name, bad in (("issuing_date_from", "12/01/2026"), ("amount_to", "-1"), ("invoice_type", "weekly")):
        with pytest.raises(LagoApiError) as exc:
            sdk.invoices.find_all({name: bad})
        assert (exc.value.status_code, list(exc.value.response["error_details"])) == (422, [name])


def test_marking_an_invoice_paid_as_lago_users_do(lago) -> None:  # type: ignore[no-untyped-def]
    """`invoices.update(Invoice(payment_status="succeeded"), id)`: a payment of what is due (357.00) is recorded, so
    the invoice is paid; again changes nothing; it cannot go back to pending; `failed` and metadata are refused."""
    from lago_python_client.models.invoice import Invoice

    sdk, app = lago
    sdk.add_ons.create(AddOn(name="Setup fee", code="setup", amount_cents=15000, amount_currency="EUR"))
    inv = _one_off(sdk, InvoiceFee(add_on_code="setup", units=2))  # 2 x 150.00 + 19 % = 357.00
    paid = sdk.invoices.update(Invoice(payment_status="succeeded"), inv.lago_id)
    assert (paid.payment_status, paid.total_paid_amount_cents, paid.total_due_amount_cents) == ("succeeded", 35700, 0)
    again = sdk.invoices.update(Invoice(payment_status="succeeded"), inv.lago_id)
    assert (again.payment_status, again.total_paid_amount_cents) == ("succeeded", 35700)  # one payment, not two
    from meterstream.entities import payments

    assert [p.amount_minor for p in payments.list_payments(app.state.sessions, T)] == [35700]
    for body, field in ((Invoice(payment_status="pending"), "payment_status"),
                        (Invoice(payment_status="failed"), "payment_status")):  # fmt: skip
        with pytest.raises(LagoApiError) as exc:
            sdk.invoices.update(body, inv.lago_id)
        assert (exc.value.status_code, list(exc.value.response["error_details"])) == (422, [field])
    with pytest.raises(LagoApiError) as exc:
        sdk.invoices.update(Invoice(payment_status="succeeded"), "INV-NOPE")
    assert (exc.value.status_code, exc.value.response["code"]) == (404, "invoice_not_found")
