"""Postpaid levels in processor/balances.py (billing/thresholds.py): percentages of the credit limit and of the
subscriptions' minimum commitment, each notified once per crossing, and the `limit` command at the soft level,
lifted by `reactivate` when the period's usage is back under it. On a real RocksDB partition store, amounts by hand.

Customer c2: credit_limit 100, alerts at 50% and 80%, soft level 90%. December's usage: 30.00 + 20.00 = 50.00
(50% reached: one note); + 29.99 = 79.99 (nothing); + 0.01 = 80.00 (80%); + 10.00 = 90.00 (the soft level: `limit`);
+ 5.00 = 95.00 (nothing again); + 5.01 = 100.01 > 100 (suspend). January: 1.00 (every level left: `reactivate`
for both reasons, no note); + 49.00 = 50.00 (50% crossed again: a new note with a new id).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from prometheus_client import REGISTRY
from test_balances import T, at, customer, kinds, on_partition, row

from meterstream.billing import thresholds as th
from meterstream.deploy.provisioning_consumer import ProvisioningState
from meterstream.processor.balances import balance_key
from meterstream.schemas.entities import CustomerDoc, Phase, PlanVersionDoc, SubscriptionDoc
from meterstream.schemas.provisioning import decode_command, decode_notification

JAN = datetime(2027, 1, 5, tzinfo=UTC)


def notes(out) -> list:
    return [decode_notification(v) for t, _, v in out if t.endswith("notifications")]


def test_credit_limit_levels_notify_once_and_the_soft_level_limits_then_lifts(tmp_path) -> None:
    _, b, part = on_partition(
        tmp_path,
        customer(
            "c2", {"credit_limit": "100", "credit_limit_alert_percent": "50,80", "credit_limit_soft_percent": "90"}
        ),
    )

    out = part.run(b, [row("c2", "30.00", at(10), 1), row("c2", "20.00", at(10, 1), 2)])
    assert kinds(out) == [("note", "credit_limit.threshold_crossed")]
    [first] = notes(out)
    assert first.data == {"threshold": "limit:50", "period": "2026-12", "usage": "50.00", "currency": "EUR",
                          "credit_limit": "100", "commitment": None}  # fmt: skip
    assert kinds(part.run(b, [row("c2", "29.99", at(11), 3)])) == []  # 79.99: under 80%
    out = part.run(b, [row("c2", "0.01", at(11, 1), 4)])
    assert [n.data["threshold"] for n in notes(out)] == ["limit:80"]  # exactly 80.00: reached

    out = part.run(b, [row("c2", "10.00", at(12), 5)])  # 90.00: the soft level
    assert kinds(out) == [("limit", "credit_limit_soft"), ("note", "credit_limit.soft_reached")]
    limit = next(decode_command(v) for t, _, v in out if t.endswith("provisioning"))
    assert limit.state == {"period": "2026-12", "usage": "90.00", "credit_limit": "100", "soft_percent": "90"}
    assert kinds(part.run(b, [row("c2", "5.00", at(12, 1), 6)])) == []  # 95.00: limited already, no flapping

    out = part.run(b, [row("c2", "5.01", at(13), 7)])  # 100.01 > 100
    assert kinds(out) == [("suspend", "credit_limit_exceeded"), ("note", "credit_limit.exceeded")]

    out = part.run(b, [row("c2", "1.00", JAN, 8, period="2027-01")])  # a new period: 1.00
    assert kinds(out) == [("reactivate", "credit_limit_soft"), ("reactivate", "credit_limit_exceeded")]
    unlimit = next(decode_command(v) for t, _, v in out if t.endswith("provisioning"))
    out = part.run(b, [row("c2", "49.00", JAN.replace(hour=1), 9, period="2027-01")])
    [again] = notes(out)
    assert again.data["threshold"] == "limit:50" and again.data["period"] == "2027-01" and again.id != first.id

    # the reference consumer: limited by the `limit`, active again after its `reactivate`
    state = ProvisioningState(tmp_path / "prov.sqlite")
    try:
        assert state.apply(limit).state == "limited"
        assert state.apply(unlimit).state == "active"
    finally:
        state.close()


def test_a_commitment_level_counts_the_subscriptions_minimum_commitment(tmp_path) -> None:
    _, b, part = on_partition(
        tmp_path,
        customer("c3", {"commitment_alert_percent": "100"}),
        PlanVersionDoc(tenant=T, code="pro", version=1, name="Pro", currency="EUR", minimum_commitment=Decimal("200")),
        SubscriptionDoc(
            tenant=T,
            external_id="s3",
            customer="c3",
            version=1,
            phases=[Phase(plan_code="pro", plan_version=1, start=at(0))],
        ),
    )
    assert kinds(part.run(b, [row("c3", "150.00", at(10), 1)])) == []  # 75% of 200
    out = part.run(b, [row("c3", "50.00", at(11), 2)])  # 200.00: 100% of the commitment
    [note] = notes(out)
    assert note.kind == "commitment.threshold_crossed"
    assert (note.data["threshold"], note.data["usage"], note.data["commitment"]) == ("commitment:100", "200.00", "200")
    assert kinds(part.run(b, [row("c3", "10.00", at(12), 3)])) == []  # past it already: once per crossing


def test_long_decimal_metadata_never_stops_the_batch(tmp_path, caplog) -> None:
    # review finding: these two values made the soft level's product inexact (decimal.Inexact in the batch, replayed
    # for ever); now both are refused by name, and the customer's batch still goes through
    long_limit, long_soft = "1000.123456789012345678901234567890123", "90.12345678901234567890123456789012345"
    _, b, part = on_partition(
        tmp_path,
        customer("c4", {"credit_limit": long_limit, "credit_limit_soft_percent": long_soft}),
        customer("c2", {"credit_limit": "100", "credit_limit_alert_percent": "50"}),
    )
    out = part.run(b, [row("c4", "950.00", at(10), 1), row("c2", "60.00", at(10), 2)])
    assert [n.data["threshold"] for n in notes(out)] == ["limit:50"]  # c2: 60 >= 50% of 100
    assert "metadata.credit_limit: at most 30 significant digits" in caplog.text


def test_a_failing_level_decision_skips_that_customer_s_levels_only(tmp_path, caplog, monkeypatch) -> None:
    # any exception in one customer's levels is logged and skips them: the debit is kept, the batch and the other
    # customers go on; the levels are decided again (and notified) by its next batch
    _, b, part = on_partition(tmp_path, *(CustomerDoc(tenant=T, external_id=c, name=c, version=1, currency="EUR",
                              metadata={"credit_limit": "100", "credit_limit_alert_percent": "50"})
                              for c in ("c5", "c6")))  # fmt: skip
    real = th.postpaid_crossed

    def broken(rules, used, commitment):
        if used == Decimal("70.00"):  # c5's usage
            raise ArithmeticError("boom")
        return real(rules, used, commitment)

    monkeypatch.setattr(th, "postpaid_crossed", broken)
    skips = REGISTRY.get_sample_value("meterstream_processor_balance_skips_total", {"what": "levels"}) or 0.0
    out = part.run(b, [row("c5", "70.00", at(10), 1), row("c6", "55.00", at(10), 2)])
    assert [(n.customer, n.data["threshold"]) for n in notes(out)] == [("c6", "limit:50")]
    assert "customer acme/c5: levels skipped: ArithmeticError: boom" in caplog.text
    # counted too, so that a dashboard or an alert sees it
    assert REGISTRY.get_sample_value("meterstream_processor_balance_skips_total", {"what": "levels"}) == skips + 1
    monkeypatch.setattr(th, "postpaid_crossed", real)
    out = part.run(b, [row("c5", "1.00", at(11), 3)])  # 70.00 was debited: 71.00 now, past 50%
    assert [(n.customer, n.data["threshold"], n.data["usage"]) for n in notes(out)] == [("c5", "limit:50", "71.00")]


def test_a_row_of_an_earlier_period_never_moves_the_period_back(tmp_path) -> None:
    # credit limit 100: December 150.00 (suspended), January 1.00 (reactivated); then a session's row released
    # late by the clock, dated at the session's start in December: 0.50 more for December (150.50), but the
    # period decided on stays January (1.00, within the limit): nothing is sent
    _, b, part = on_partition(
        tmp_path,
        customer("c7", {"credit_limit": "100"}),
    )
    assert kinds(part.run(b, [row("c7", "150.00", at(10), 1)])) == [("suspend", "credit_limit_exceeded"),
                                                                     ("note", "credit_limit.exceeded")]  # fmt: skip
    assert kinds(part.run(b, [row("c7", "1.00", JAN, 2, period="2027-01")])) == [
        ("reactivate", "credit_limit_exceeded")]  # fmt: skip
    assert kinds(part.run(b, [row("c7", "0.50", at(11), 3)])) == []
    entry = part.store.get(balance_key(T, "c7"))
    assert entry["pl"] == "2027-01|EUR" and entry["m"] == {"2026-12|EUR": "150.50", "2027-01|EUR": "1.00"}
