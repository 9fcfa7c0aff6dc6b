"""Automatic top-ups (issue 16 §2, Lago's `recurring_transaction_rules` with trigger `threshold`): the processor
asks once per crossing (processor/balances.py), the notifications relay writes the top-up once per request
(webhooks/notifications_relay.py -> entities.wallets.recurring_top_up), and the top-up comes back as a new
version of the wallet. Amounts by hand.

Wallet W1 (EUR, rate 1): 10.00 paid at 00:00, rule "at or below 3 credits, add 20 paid credits".
Usage 4.004 + 3.5 = 7.504 -> 7.50 drawn, balance 2.50 <= 3: one request for 20.00. Usage 1.00 -> 8.504 -> 8.50,
balance 1.50: still below the line, no second request. The 20.00 top-up settles at 12:00: balance 21.50 > 3, the
rule leaves the set. Usage 19.00 at 12:30 -> cumulative 27.504 -> 27.50, the piece from 12:00 draws
27.50 - 8.50 = 19.00: balance 2.50 <= 3: a second request, with another id.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from test_balances import T, at, on_partition, row

from meterstream.entities.customers import put_customer
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.entities.wallets import (
    TopUp,
    WalletRow,
    WalletSpec,
    create_wallet,
    list_transactions,
    terminate_wallet,
    update_wallet,
    wallet_doc,
)
from meterstream.processor.balances import balance_key
from meterstream.processor.store import BatchState
from meterstream.schemas.entities import CustomerDoc, TopUpRuleDoc, WalletDoc, WalletEntryDoc
from meterstream.schemas.provisioning import Notification, decode_balance, decode_notification
from meterstream.webhooks.notifications_relay import write_once

REQUESTED = "wallet.top_up_requested"


RULE = TopUpRuleDoc(id="R1", threshold_credits=Decimal("3"), paid_credits=Decimal("20"))
LOT1 = WalletEntryDoc(id="t1", kind="paid", units=1000, settled_at=at(0))
LOT2 = WalletEntryDoc(id="t2", kind="paid", units=2000, settled_at=at(12))


def wallet(version: int, *entries: WalletEntryDoc, rules=(RULE,), rate: str = "1") -> WalletDoc:  # type: ignore[no-untyped-def]
    return WalletDoc(tenant=T, id="W1", customer="c1", currency="EUR", rate_amount=Decimal(rate), priority=50,
                     started_at=at(0), version=version, entries=list(entries), top_up_rules=list(rules))  # fmt: skip


def requests(out) -> list:  # type: ignore[no-untyped-def]
    return [n for n in (decode_notification(v) for t, _, v in out if t.endswith("notifications"))
            if n.kind == REQUESTED]  # fmt: skip


def balance(out) -> str:  # type: ignore[no-untyped-def]
    (snap,) = [decode_balance(v) for t, _, v in out if t.endswith("balances")]
    return snap.balance


def test_one_request_per_crossing_and_a_new_one_after_the_top_up(tmp_path) -> None:
    table, b, part = on_partition(tmp_path, wallet(1, LOT1))

    out = part.run(b, [row("c1", "4.004", at(10), 1), row("c1", "3.5", at(10, 1), 2)])
    assert balance(out) == "2.50"
    (first,) = requests(out)
    assert first.data == {"wallet": "W1", "rule": "R1", "currency": "EUR", "paid_credits": "20",
                          "granted_credits": "0", "threshold_credits": "3", "balance": "2.50",
                          "credits_balance": "2.5"}  # fmt: skip
    assert first.customer == "c1" and first.at == "2026-12-01T10:01:00Z"  # decided by the usage that crossed

    out = part.run(b, [row("c1", "1.00", at(10, 2), 3)])
    assert balance(out) == "1.50" and requests(out) == []  # still at or below the line: no second request

    table.apply(wallet(2, LOT1, LOT2))  # the 20.00 top-up, settled at 12:00
    state = BatchState(part.store)
    out = b.reevaluate(state, T, "c1", int(at(13).timestamp() * 1000))
    state.commit(4, Counter())
    assert balance(out) == "21.50" and requests(out) == []
    assert part.store.get(balance_key(T, "c1"))["tu"] == []  # back above the line

    out = part.run(b, [row("c1", "19.00", at(12, 30), 4)])
    assert balance(out) == "2.50"
    (second,) = requests(out)
    assert second.id != first.id and second.data["paid_credits"] == "20"


def test_the_line_is_at_or_below_in_credits_of_the_wallets_rate(tmp_path) -> None:
    # rate 0.5 EUR per credit: 20 credits = 10.00 EUR; the line, 10 credits, is 5.00 EUR
    rule = TopUpRuleDoc(id="R2", threshold_credits=Decimal("10"), granted_credits=Decimal("4"))
    _, b, part = on_partition(tmp_path, wallet(1, LOT1, rules=(rule,), rate="0.5"))
    out = part.run(b, [row("c1", "4.99", at(10), 1)])
    assert balance(out) == "5.01" and requests(out) == []  # 10.02 credits: above the line
    out = part.run(b, [row("c1", "0.01", at(10, 1), 2)])
    (req,) = requests(out)  # 5.00 EUR = 10 credits: at the line
    assert (req.data["balance"], req.data["credits_balance"], req.data["granted_credits"]) == ("5.00", "10", "4")


def test_a_rule_not_yet_started_or_expired_asks_nothing(tmp_path) -> None:
    later = TopUpRuleDoc(id="R3", threshold_credits=Decimal("5"), paid_credits=Decimal("1"), started_at=at(11))
    ended = TopUpRuleDoc(id="R4", threshold_credits=Decimal("5"), paid_credits=Decimal("1"), expiration_at=at(9))
    _, b, part = on_partition(tmp_path, wallet(1, LOT1, rules=(later, ended)))
    assert requests(part.run(b, [row("c1", "6.00", at(10), 1)])) == []  # balance 4.00, neither rule in effect
    assert [r.data["rule"] for r in requests(part.run(b, [row("c1", "1.00", at(11), 2)]))] == ["R3"]


def test_a_batch_repeated_after_a_crash_asks_with_the_same_id(tmp_path) -> None:
    _, b, part = on_partition(tmp_path, wallet(1, LOT1))
    rows = [row("c1", "8.00", at(10), 1)]
    first = b.after_batch({0: BatchState(part.store)}, {0: rows}, {0: 1}, 0)
    second = b.after_batch({0: BatchState(part.store)}, {0: rows}, {0: 1}, 0)  # the first state never committed
    assert [n.id for n in requests(first)] == [n.id for n in requests(second)] and len(requests(first)) == 1


def _store(tmp_path):  # type: ignore[no-untyped-def]
    engine = make_engine(url=f"sqlite:///{tmp_path / 'entities.db'}")
    migrate(engine=engine)
    sf = session_factory(engine)
    put_customer(sf, CustomerDoc(tenant=T, external_id="c1", name="c1", version=0, currency="EUR"))
    return sf


def _doc(sf, wallet_id: str) -> WalletDoc:  # type: ignore[no-untyped-def]
    with sf() as s:
        return wallet_doc(s, s.query(WalletRow).filter_by(wallet_id=wallet_id).one())


def test_the_loop_through_the_store_tops_up_once_even_when_the_request_comes_twice(tmp_path) -> None:
    sf = _store(tmp_path)
    start = datetime.now(UTC) - timedelta(hours=2)
    rules = [{"trigger": "threshold", "threshold_credits": "3", "paid_credits": "20", "granted_credits": "5"}]
    made, _ = create_wallet(sf, WalletSpec(T, "c1", rules=rules), [TopUp("paid", "10")], at=start)
    (rule,) = made.rules
    table, b, part = on_partition(tmp_path, _doc(sf, made.id))
    usage = start + timedelta(minutes=30)
    out = part.run(b, [row("c1", "7.504", usage, 1)])
    assert balance(out) == "2.50"
    (req,) = requests(out)
    assert req.data["rule"] == rule.id and req.data["wallet"] == made.id

    # the relay reads the request twice (the processor repeated it, or the relay crashed before its commit)
    assert write_once(sf, [req])["top_up_written"] == 1
    assert write_once(sf, [req, req])["top_up_repeated"] == 2
    txs = list_transactions(sf, T, made.id)
    assert [(t.kind, t.credits, t.reference) for t in txs[1:]] == [
        ("paid", Decimal("20"), f"auto:{req.id}:paid"),
        ("granted", Decimal("5"), f"auto:{req.id}:granted"),
    ]

    # the wallet's new version reaches the processor: 2.50 + 25.00 = 27.50, above the line
    doc = _doc(sf, made.id)
    assert sum(e.units for e in doc.entries) == 3500
    table.apply(doc)
    state = BatchState(part.store)
    out = b.reevaluate(state, T, "c1", int(datetime.now(UTC).timestamp() * 1000))
    state.commit(2, Counter())
    assert balance(out) == "27.50" and requests(out) == []


def test_a_request_for_a_removed_rule_or_a_terminated_wallet_writes_nothing(tmp_path) -> None:
    sf = _store(tmp_path)
    rules = [{"trigger": "threshold", "threshold_credits": "1", "paid_credits": "2"}]
    made, _ = create_wallet(sf, WalletSpec(T, "c1", rules=rules))
    (rule,) = made.rules
    data = {"wallet": made.id, "rule": rule.id, "paid_credits": "2", "granted_credits": "0"}

    def req(n: str) -> Notification:
        return Notification(id=n * 32, tenant=T, customer="c1", kind=REQUESTED, at="2026-12-01T10:00:00Z", data=data)

    kept = update_wallet(sf, T, made.id, rules=[{**rules[0], "id": rule.id, "threshold_credits": "2"}])
    assert [(r.id, r.threshold_credits) for r in kept.rules] == [(rule.id, Decimal("2"))]  # named: the same rule
    assert write_once(sf, [req("a")])["top_up_written"] == 1
    update_wallet(sf, T, made.id, rules=[])
    assert write_once(sf, [req("b")])["top_up_skipped"] == 1  # the rule was removed since
    terminate_wallet(sf, T, made.id)
    assert write_once(sf, [req("c")])["top_up_skipped"] == 1
    assert write_once(sf, [req("a")])["top_up_repeated"] == 1  # applied before the termination: still once
    assert [t.reference for t in list_transactions(sf, T, made.id)] == [f"auto:{'a' * 32}:paid"]
