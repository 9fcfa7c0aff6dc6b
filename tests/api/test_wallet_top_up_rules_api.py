"""Automatic top-up rules through the APIs: /v1 wallets (`recurring_transaction_rules` on create and PATCH, returned
with the wallet, refusals naming the field) and Lago's shape through lago-python-client, unchanged (create with a
rule, a fixed rule without credits taking the wallet's, update keeping a rule by its `lago_id`, an `interval` rule
kept, a bad interval refused as LagoApiError 422 naming the field)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer
from lago_python_client.models.wallet import RecurringTransactionRule, RecurringTransactionRuleList, Wallet
from lago_wallet_helpers import lago_wallet_app
from test_wallets_api import app  # noqa: F401  (the /v1 app fixture)

RULE = {"trigger": "threshold", "threshold_credits": "10", "paid_credits": "50", "granted_credits": "5"}


def test_v1_rules_on_create_patch_and_read(app) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    client, _insert, admin, reader, other = app
    body = {"paid_credits": "20", "recurring_transaction_rules": [RULE]}
    r = client.post("/v1/customers/c1/wallets", headers=admin, json=body)
    assert r.status_code == 201, r.text
    (rule,) = r.json()["recurring_transaction_rules"]
    assert {k: rule[k] for k in ("trigger", "method", "threshold_credits", "paid_credits", "granted_credits")} == {
        "trigger": "threshold", "method": "fixed", "threshold_credits": "10", "paid_credits": "50",
        "granted_credits": "5"}  # fmt: skip
    wallet_id = r.json()["id"]
    assert client.get(f"/v1/wallets/{wallet_id}", headers=reader).json()["recurring_transaction_rules"] == [rule]
    assert client.get(f"/v1/wallets/{wallet_id}", headers=other).status_code == 404  # another tenant's

    same = {**RULE, "id": rule["id"], "paid_credits": "70"}
    changed = client.patch(f"/v1/wallets/{wallet_id}", headers=admin, json={"recurring_transaction_rules": [same]})
    assert changed.status_code == 200, changed.text
    (after,) = changed.json()["recurring_transaction_rules"]
    assert (after["id"], after["paid_credits"], after["created_at"]) == (rule["id"], "70", rule["created_at"])
    renamed = client.patch(f"/v1/wallets/{wallet_id}", headers=admin, json={"name": "Main"}).json()
    assert renamed["recurring_transaction_rules"] == [after]  # left out of the PATCH: kept
    cleared = client.patch(f"/v1/wallets/{wallet_id}", headers=admin, json={"recurring_transaction_rules": []})
    assert cleared.json()["recurring_transaction_rules"] == []
    weekly = {"trigger": "interval", "interval": "weekly", "granted_credits": "3"}
    every = client.patch(f"/v1/wallets/{wallet_id}", headers=admin, json={"recurring_transaction_rules": [weekly]})
    (got,) = every.json()["recurring_transaction_rules"]
    assert {k: got[k] for k in ("trigger", "interval", "threshold_credits", "paid_credits", "granted_credits")} == {
        "trigger": "interval", "interval": "weekly", "threshold_credits": None, "paid_credits": "0",
        "granted_credits": "3"}  # fmt: skip


@pytest.mark.parametrize(("rule", "field"), [
    ({**RULE, "trigger": "interval"}, "recurring_transaction_rules[0].interval"),
    ({**RULE, "trigger": "interval", "interval": "monthly"}, "recurring_transaction_rules[0].threshold_credits"),
    ({**RULE, "trigger": "later"}, "recurring_transaction_rules[0].trigger"),
    ({**RULE, "threshold_credits": "-2"}, "recurring_transaction_rules[0].threshold_credits"),
    ({**RULE, "threshold_credits": 2.5}, "recurring_transaction_rules[0].threshold_credits"),
    ({"trigger": "threshold", "threshold_credits": "1"}, "recurring_transaction_rules[0].paid_credits"),
])  # fmt: skip
def test_v1_bad_rules_are_refused_naming_the_field(app, rule, field) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    client, _insert, admin, _reader, _ = app
    r = client.post("/v1/customers/c1/wallets", headers=admin, json={"recurring_transaction_rules": [rule]})
    assert (r.status_code, r.json()["error"]["field"]) == (422, field), r.text
    assert client.get("/v1/customers/c1/wallets", headers=admin).json() == {"items": []}  # nothing written


@pytest.fixture
def lago(tmp_path: Path, chdb_client):  # type: ignore[no-untyped-def]
    with lago_wallet_app(tmp_path, chdb_client, "lr") as (sdk, _insert, _app):
        yield sdk


def rules(*items: RecurringTransactionRule) -> RecurringTransactionRuleList:
    return RecurringTransactionRuleList(__root__=list(items))


def test_lago_sdk_rules(lago) -> None:  # type: ignore[no-untyped-def]
    lago.customers.create(Customer(external_id="c1", name="C1", currency="EUR"))
    first = RecurringTransactionRule(trigger="threshold", threshold_credits="10", granted_credits="8")
    made = lago.wallets.create(Wallet(external_customer_id="c1", currency="EUR", rate_amount="0.5", paid_credits="40",
                                      recurring_transaction_rules=rules(first)))  # fmt: skip
    (rule,) = made.recurring_transaction_rules.__root__
    assert (rule.trigger, rule.method, rule.threshold_credits, rule.paid_credits, rule.granted_credits,
            rule.status) == ("threshold", "fixed", "10", "0.0", "8", "active")  # fmt: skip
    assert made.credits_balance == "40"  # the rule adds nothing by itself: the processor asks when it is crossed

    # Lago: a fixed rule without credits of its own tops up by the wallet's paid/granted credits
    second = lago.wallets.create(Wallet(external_customer_id="c1", currency="EUR", paid_credits="12",
                                        recurring_transaction_rules=rules(RecurringTransactionRule(
                                            trigger="threshold", method="fixed", threshold_credits="2"))))  # fmt: skip
    (own,) = second.recurring_transaction_rules.__root__
    assert (own.paid_credits, own.granted_credits, own.threshold_credits) == ("12", "0.0", "2")

    changed = RecurringTransactionRule(lago_id=rule.lago_id, trigger="threshold", threshold_credits="6",
                                       paid_credits="4")  # fmt: skip
    kept = lago.wallets.update(Wallet(recurring_transaction_rules=rules(changed)), made.lago_id)
    (after,) = kept.recurring_transaction_rules.__root__
    assert (after.lago_id, after.threshold_credits, after.paid_credits, after.created_at) == (
        rule.lago_id, "6", "4", rule.created_at)  # fmt: skip
    assert lago.wallets.find(made.lago_id).recurring_transaction_rules.__root__[0].lago_id == rule.lago_id

    # an interval rule: kept and answered as Lago answers it (the billing run writes its top-ups: docs/wallets.md)
    monthly = lago.wallets.create(Wallet(external_customer_id="c1", currency="EUR", recurring_transaction_rules=rules(
        RecurringTransactionRule(trigger="interval", interval="monthly", paid_credits="5"))))  # fmt: skip
    (every,) = monthly.recurring_transaction_rules.__root__
    assert (every.trigger, every.interval, every.threshold_credits, every.paid_credits) == (
        "interval", "monthly", None, "5")  # fmt: skip
    with pytest.raises(LagoApiError) as refused:
        lago.wallets.create(Wallet(external_customer_id="c1", currency="EUR", recurring_transaction_rules=rules(
            RecurringTransactionRule(trigger="interval", interval="daily", paid_credits="5"))))  # fmt: skip
    assert (refused.value.status_code, list(refused.value.response["error_details"])) == (
        422, ["recurring_transaction_rules[0].interval"])  # fmt: skip
