"""lago-python-client 1.55.0, unchanged, for billing: billable metrics, a plan (graduated storage + a standard
charge + a monthly fee), a customer and a subscription through the SDK against a real uvicorn server; events
through the SDK, rated live by the pipeline (real broker, processor and sink subprocesses, embedded
ClickHouse); `customers.current_usage` equals a hand calculation, and `meterstream close` of that period
writes the same amounts.

Worked by hand (plan `pro`, USD, tenant lago-bill, subscription s1 of customer acme from the start of this
month, UTC):
  storage (sum_agg of gb, graduated 0-10 at 0.50, then 0.40): 8 + 7 GB (a duplicate of 999 dropped) = 15 GB
      -> 10 x 0.50 + 5 x 0.40 = 7.00 -> 700 cents
  api_calls (count_agg, standard 0.02): 3 calls (one sent twice) -> 0.06 -> 6 cents
  probe (count_agg, standard 0: only to see the subscription live in the processor): 0 cents
  current usage: 706 cents; the invoice adds the month's 10.00 fee in arrears (every day active): 17.06.
Subscription s2 of customer globex on pro with Lago `plan_overrides` (fee 500 cents; storage graduated 0-10 at
0.30, then 0.20; api_calls 0.05), from the start of this month:
  storage 12 GB -> 10 x 0.30 + 2 x 0.20 = 3.40; api_calls 2 -> 0.10; current usage 350 cents; the close's lines
  3.40 and 0.10 and the overridden fee 5.00 for the whole month (still subscribed); `invoices.preview` of s2
  answers that invoice before the close: 850 cents.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import BatchEvent, BillableMetric, Charge, Charges, Customer, Event, Plan, Subscription
from lago_python_client.models.charge import ChargeOverrides, ChargesOverrides
from lago_python_client.models.invoice import InvoicePreview
from lago_python_client.models.plan import PlanOverrides
from lago_python_client.models.subscription import Subscriptions
from served_app import serve
from test_compat_lago_sdk import ROOT, environment, find_when_rated

from meterstream.schemas.settings import Settings, settings_from_env

pytestmark = pytest.mark.kafka
TENANT = "lago-bill"


def graduated() -> dict:
    return {
        "graduated_ranges": [
            {"from_value": 0, "to_value": 10, "per_unit_amount": "0.50", "flat_amount": "0"},
            {"from_value": 11, "to_value": None, "per_unit_amount": "0.40", "flat_amount": "0"},
        ]
    }


def wait_live(base: str, key: str, lago: Client, stamp: int, timeout: float = 60, subscription: str = "s1") -> None:
    """Send probe events until one is rated: the processor has the subscription (its entity reached the stream)."""
    deadline = time.monotonic() + timeout
    i = 0
    while True:
        i += 1
        tx = f"probe-{subscription}-{i}"
        lago.events.create(Event(transaction_id=tx, external_subscription_id=subscription, code="probe",
                                 timestamp=stamp))  # fmt: skip
        for _ in range(20):
            time.sleep(0.25)
            r = httpx.get(f"{base}/compat/lago/api/v1/events/{tx}", headers={"Authorization": f"Bearer {key}"})
            if r.status_code == 200:
                break
        if r.status_code == 200 and r.json()["event"]["meterstream"]["status"] == "rated":
            return
        assert time.monotonic() < deadline, f"the subscription never went live: {r.status_code} {r.text[:300]}"


def test_lago_sdk_billing_end_to_end(kafka_settings: Settings, tmp_path: Path) -> None:
    from meterstream.api.app import create_app
    from meterstream.deploy.pipeline import Pipeline, wait_drained
    from meterstream.ingest.topics import ensure_topics
    from meterstream.processor.runner import app_id

    env = environment(kafka_settings, tmp_path)
    settings = settings_from_env(env)
    ensure_topics(settings)
    now = datetime.now(UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    stamp = int(max(now - timedelta(minutes=1), month + timedelta(seconds=1)).timestamp())
    pipeline = Pipeline(env, tmp_path / "logs")
    app = create_app(settings)  # owns its producer: runs the entity outbox relay while it serves
    key = app.state.keys.create(TENANT, "admin", "lago billing")[1]
    try:
        pipeline.start("processor")
        pipeline.start("sink")
        with serve(app) as base:
            lago = Client(api_key=key, api_url=f"{base}/compat/lago/")
            storage = lago.billable_metrics.create(
                BillableMetric(name="Storage", code="storage", aggregation_type="sum_agg", field_name="gb")
            )
            calls = lago.billable_metrics.create(
                BillableMetric(name="API calls", code="api_calls", aggregation_type="count_agg")
            )
            probe = lago.billable_metrics.create(
                BillableMetric(name="Probe", code="probe", aggregation_type="count_agg")
            )
            plan = lago.plans.create(Plan(
                name="Pro", code="pro", interval="monthly", amount_cents=1000, amount_currency="USD",
                pay_in_advance=False,
                charges=Charges(__root__=[
                    Charge(billable_metric_id=storage.lago_id, charge_model="graduated", properties=graduated()),
                    Charge(billable_metric_id=calls.lago_id, charge_model="standard", properties={"amount": "0.02"}),
                    Charge(billable_metric_id=probe.lago_id, charge_model="standard", properties={"amount": "0"}),
                ]),
            ))  # fmt: skip
            assert (plan.code, plan.amount_cents, plan.interval) == ("pro", 1000, "monthly")
            assert [c.charge_model for c in plan.charges.__root__] == ["graduated", "standard", "standard"]
            assert lago.plans.find("pro").lago_id == plan.lago_id
            customer = lago.customers.create(Customer(external_id="acme", name="Acme", currency="USD", timezone="UTC"))
            assert (customer.external_id, customer.currency) == ("acme", "USD")
            assert lago.customers.find("acme").name == "Acme"
            sub = lago.subscriptions.create(
                Subscription(
                    external_customer_id="acme",
                    plan_code="pro",
                    external_id="s1",
                    subscription_at=month.isoformat(),
                    billing_time="calendar",
                )
            )
            assert (sub.status, sub.plan_code, sub.external_customer_id) == ("active", "pro", "acme")
            listed = lago.subscriptions.find_all({"external_customer_id": "acme"})["subscriptions"]
            assert [s.external_id for s in listed] == ["s1"]
            # globex's deal: pro with its own prices (plan_overrides), the charges named by their lago_id
            charge_id = {c.billable_metric_code: c.lago_id for c in plan.charges.__root__}
            lago.customers.create(Customer(external_id="globex", name="Globex", currency="USD", timezone="UTC"))
            deal = lago.subscriptions.create(Subscription(
                external_customer_id="globex", plan_code="pro", external_id="s2", subscription_at=month.isoformat(),
                plan_overrides=PlanOverrides(amount_cents=500, charges=ChargesOverrides(__root__=[
                    ChargeOverrides(id=charge_id["storage"], properties={"graduated_ranges": [
                        {"from_value": 0, "to_value": 10, "per_unit_amount": "0.30", "flat_amount": "0"},
                        {"from_value": 11, "to_value": None, "per_unit_amount": "0.20", "flat_amount": "0"}]}),
                    ChargeOverrides(id=charge_id["api_calls"], properties={"amount": "0.05"}),
                ])),
            ))  # fmt: skip
            assert (deal.plan_code, deal.plan_amount_cents) == ("pro", "500")

            wait_live(base, key, lago, stamp)
            wait_live(base, key, lago, stamp, subscription="s2")
            lago.events.batch_create(BatchEvent(events=[
                Event(transaction_id="st-1", external_subscription_id="s1", code="storage", timestamp=stamp,
                      properties={"gb": 8}),
                Event(transaction_id="st-2", external_subscription_id="s1", code="storage", timestamp=stamp,
                      properties={"gb": "7"}),
                Event(transaction_id="st-2", external_subscription_id="s1", code="storage", timestamp=stamp,
                      properties={"gb": 999}),  # the same transaction id: charged once
                *(Event(transaction_id=f"call-{i}", external_subscription_id="s1", code="api_calls", timestamp=stamp)
                  for i in (1, 2, 3)),
                Event(transaction_id="call-1", external_subscription_id="s1", code="api_calls", timestamp=stamp),
                Event(transaction_id="g-st-1", external_subscription_id="s2", code="storage", timestamp=stamp,
                      properties={"gb": "12"}),
                *(Event(transaction_id=f"g-call-{i}", external_subscription_id="s2", code="api_calls",
                        timestamp=stamp) for i in (1, 2)),
            ]))  # fmt: skip
            wait_drained(settings, pipeline, app_id(settings), 5, timeout=180)
            for tx in ("st-1", "st-2", "call-1", "call-2", "call-3"):
                assert find_when_rated(lago, tx).external_subscription_id == "s1"
            time.sleep(1.0)  # the sink's last batch (0.3 s) into ClickHouse

            usage = lago.customers.current_usage("acme", "s1")
            deal_usage = lago.customers.current_usage("globex", "s2")
            previewed = Subscriptions(external_ids=["s2"])
            preview = lago.invoices.preview(
                InvoicePreview(customer=Customer(external_id="globex"), subscriptions=previewed)
            )
            with pytest.raises(LagoApiError) as missing:
                lago.customers.current_usage("acme", "nope")
            assert missing.value.status_code == 404
            ended = lago.subscriptions.destroy("s1")
            assert ended.status == "terminated"
        assert pipeline.stop("processor") == 0
        assert pipeline.stop("sink") == 0
    finally:
        pipeline.stop_all()
        app.state.ingest.close()

    assert (usage.currency, usage.amount_cents, usage.total_amount_cents) == ("USD", 706, 706)
    by_code = {c.billable_metric.code: c for c in usage.charges_usage}
    assert (by_code["storage"].units, by_code["storage"].amount_cents, by_code["storage"].events_count) == (
        "15",
        700,
        2,
    )
    assert (by_code["api_calls"].units, by_code["api_calls"].amount_cents) == ("3", 6)
    assert by_code["probe"].amount_cents == 0
    assert by_code["storage"].charge.charge_model == "graduated"
    assert usage.from_datetime == month.strftime("%Y-%m-%dT%H:%M:%SZ")
    # globex's overrides: storage 12 GB = 10 x 0.30 + 2 x 0.20 = 3.40; 2 calls x 0.05 = 0.10
    assert (deal_usage.amount_cents, deal_usage.total_amount_cents) == (350, 350)
    deal_by_code = {c.billable_metric.code: c for c in deal_usage.charges_usage}
    assert (deal_by_code["storage"].units, deal_by_code["storage"].amount_cents) == ("12", 340)
    assert (deal_by_code["api_calls"].units, deal_by_code["api_calls"].amount_cents) == ("2", 10)
    # its invoice preview: the period's whole invoice, the overridden 5.00 fee included: 340 + 10 + 500 = 850
    assert (preview.status, preview.currency, preview.fees_amount_cents, preview.taxes_amount_cents,
            preview.total_amount_cents) == ("draft", "USD", 850, 0, 850)  # fmt: skip
    preview_fees = {f.item.code: f.amount_cents for f in preview.fees.__root__ if f.amount_cents}
    assert preview_fees == {"storage": 340, "api_calls": 10, "subscription_fee": 500}

    # the close of this period writes the same amounts (the subscription ended now: the fee is prorated, so
    # only the usage lines are compared; they are priced by the same code). The month has not ended: --force
    label = f"{month:%Y-%m}"
    out = tmp_path / "inv"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "meterstream.deploy.cli",
            "close",
            "--period",
            label,
            "--out",
            str(out),
            "--no-publish",
            "--force",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    doc = json.loads((out / label / TENANT / "acme.json").read_text())
    lines = {ln["code"]: (ln["quantity"], ln["amount"]) for ln in doc["lines"] if ln["kind"] == "usage"}  # v2: code
    assert lines == {"storage": ("15", "7.00"), "api_calls": ("3", "0.06"), "probe": (lines["probe"][0], "0.00")}
    # globex, still subscribed: its overridden prices, and its 5.00 fee for every day of the month (in arrears)
    deal_doc = json.loads((out / label / TENANT / "globex.json").read_text())
    deal_lines = {ln["code"]: (ln["quantity"], ln["amount"]) for ln in deal_doc["lines"] if ln["kind"] == "usage"}
    assert (deal_lines["storage"], deal_lines["api_calls"]) == (("12", "3.40"), ("2", "0.10"))
    fees = [ln["amount"] for ln in deal_doc["lines"] if ln["kind"] == "fixed"]
    assert fees == ["5.00"]
