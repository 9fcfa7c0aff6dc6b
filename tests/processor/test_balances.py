"""processor/balances.py on a real RocksDB partition store (no Kafka): the debit, the provisioning decisions and
the thresholds, with amounts by hand.

Wallet W1 of customer acme/c1: 10.00 EUR put in at 00:00. Usage 4.004 + 3.5 = 7.504 -> 7.50 drawn, balance 2.50
(below the 5 level: one notification); + 1.00 -> 8.504 -> 8.50, balance 1.50 (still below 5: nothing new);
+ 1.496 -> 10.000, balance 0.00: suspend balance_exhausted; + 0.5 -> uncovered (no second suspend). A top-up
of 20.00 at 12:00 -> balance 20.00: reactivate, and the 5 level is left; then 16.00 of usage at 12:30 ->
balance 4.00: the 5 level crossed a second time (a new notification, another id).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

import orjson

from meterstream.processor.balances import Balances, balance_key, evaluate, partition_of
from meterstream.processor.live_catalog import EntityTable
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.schemas.entities import CustomerDoc, WalletDoc, WalletEntryDoc
from meterstream.schemas.provisioning import decode_balance, decode_command, decode_notification
from meterstream.schemas.settings import Settings

T = "acme"
DAY = datetime(2026, 12, 1, tzinfo=UTC)


def at(hh: int, mm: int = 0) -> datetime:
    return DAY.replace(hour=hh, minute=mm)


def row(customer: str, amount: str, when: datetime, offset: int, period: str = "2026-12", currency: str = "EUR"):
    # schemas.rated.RATED_FIELDS order
    return (T, f"e{offset}", customer, "", "api_calls", when.isoformat().replace("+00:00", "Z"), period, "1",
            amount, "1", currency, "p@1", "api_calls", {}, "", 0, offset)  # fmt: skip


def wallet(version: int, *entries: WalletEntryDoc) -> WalletDoc:
    return WalletDoc(tenant=T, id="W1", customer="c1", currency="EUR", rate_amount=Decimal(1), priority=50,
                     started_at=at(0), version=version, entries=list(entries))  # fmt: skip


LOT1 = WalletEntryDoc(id="t1", kind="paid", units=1000, settled_at=at(0))
LOT2 = WalletEntryDoc(id="t2", kind="paid", units=2000, settled_at=at(12))


class Partition:
    """One partition's store with batches committed one after the other, as the checkpoint does."""

    def __init__(self, path) -> None:
        self.store = PartitionStore(path)
        self.offset = 0

    def run(self, balances: Balances, rows: list[tuple]) -> list[tuple[str, bytes, bytes]]:
        state = BatchState(self.store)
        last = max((r[16] for r in rows), default=self.offset)
        out = balances.after_batch({0: state}, {0: rows}, {0: last}, int(at(23).timestamp() * 1000))
        state.commit(last + 1, Counter())
        return out


def customer(external_id: str, metadata: dict[str, str]) -> CustomerDoc:
    """Customer `external_id` of tenant T, in EUR, with `metadata` (its levels: balance_alert_below...)."""
    return CustomerDoc(tenant=T, external_id=external_id, name=external_id.upper(), version=1, currency="EUR",
                       metadata=metadata)  # fmt: skip


class Setup(NamedTuple):
    table: EntityTable
    balances: Balances
    part: Partition


def on_partition(tmp_path, *docs) -> Setup:  # type: ignore[no-untyped-def]
    """An entity table holding `docs` (applied in order), `Balances` over it, and partition 0's store."""
    table = EntityTable()
    for doc in docs:
        table.apply(doc)
    return Setup(table, Balances(Settings(), table), Partition(tmp_path / "p0"))


def kinds(out):
    found = []
    for topic, _key, value in out:
        if topic.endswith("provisioning"):
            c = decode_command(value)
            found.append((c.command, c.reason))
        elif topic.endswith("notifications"):
            found.append(("note", decode_notification(value).kind))
    return found


def snapshot(out):
    snaps = [decode_balance(v) for t, _, v in out if t.endswith("balances")]
    assert len(snaps) == 1
    return snaps[0]


def test_debit_suspend_at_zero_topup_reactivates_and_thresholds_notify_once_per_crossing(tmp_path) -> None:
    table, b, part = on_partition(
        tmp_path,
        customer("c1", {"balance_alert_below": "5"}),
        wallet(1, LOT1),
    )

    out = part.run(b, [row("c1", "4.004", at(10), 1), row("c1", "3.5", at(10, 1), 2)])
    snap = snapshot(out)
    assert (snap.balance, snap.consumed, snap.currency) == ("2.50", "7.50", "EUR")
    assert kinds(out) == [("note", "balance.threshold_crossed")]
    first_note = next(decode_notification(v) for t, _, v in out if t.endswith("notifications"))
    assert first_note.data["threshold"] == "below:5" and first_note.data["balance"] == "2.50"

    out = part.run(b, [row("c1", "1.00", at(10, 2), 3)])
    assert snapshot(out).balance == "1.50" and kinds(out) == []  # still below 5: no flapping

    out = part.run(b, [row("c1", "1.496", at(10, 3), 4)])
    assert snapshot(out).balance == "0.00"
    assert kinds(out) == [("suspend", "balance_exhausted"), ("note", "balance.exhausted")]
    suspend = next(decode_command(v) for t, _, v in out if t.endswith("provisioning"))
    assert suspend.state["balance"] == "0.00" and suspend.customer == "c1" and suspend.tenant == T

    out = part.run(b, [row("c1", "0.5", at(10, 4), 5)])
    assert snapshot(out).balance == "0.00" and kinds(out) == []  # exhausted already: no second suspend

    # a top-up of 20.00 at 12:00 (a new version of the wallet document): the 0.50 uncovered before it stays so
    table.apply(wallet(2, LOT1, LOT2))
    state = BatchState(part.store)
    out = b.reevaluate(state, T, "c1", int(at(13).timestamp() * 1000))
    state.commit(6, Counter())
    assert snapshot(out).balance == "20.00"
    reactivate = [decode_command(v) for t, _, v in out if t.endswith("provisioning")]
    assert [(c.command, c.reason) for c in reactivate] == [("reactivate", "balance_exhausted")]
    assert reactivate[0].at == at(12).isoformat()  # decided by the top-up

    out = part.run(b, [row("c1", "16.00", at(12, 30), 6)])
    assert snapshot(out).balance == "4.00"
    again = [decode_notification(v) for t, _, v in out if t.endswith("notifications")]
    assert [n.kind for n in again] == ["balance.threshold_crossed"] and again[0].id != first_note.id

    entry = part.store.get(balance_key(T, "c1"))
    assert entry["o"] == 6 and entry["sus"] == [] and entry["th"] == ["below:5"]
    # the exact usage per piece: 10.500 from 00:00, 16.00 from the top-up at 12:00
    assert {k: Decimal(v) for k, v in entry["u"].items()} == {at(0).isoformat(): Decimal("10.500"),
                                                             at(12).isoformat(): Decimal("16.00")}  # fmt: skip


def test_a_replayed_row_is_not_debited_twice(tmp_path) -> None:
    _, b, part = on_partition(tmp_path, wallet(1, LOT1))
    rows = [row("c1", "2.25", at(10), 1), row("c1", "0.75", at(10, 1), 2)]
    assert snapshot(part.run(b, rows)).balance == "7.00"
    # the same positions again (a replay of committed positions): skipped, nothing changes, nothing emitted
    assert part.run(b, rows) == []
    entry = part.store.get(balance_key(T, "c1"))
    assert entry["o"] == 2 and Decimal(entry["u"][at(0).isoformat()]) == Decimal("3.00")
    # an uncommitted batch replayed from the committed state gives the same outputs (ids and figures)
    later = [row("c1", "7.00", at(11), 3)]
    state1 = BatchState(part.store)
    first = b.after_batch({0: state1}, {0: later}, {0: 3}, 0)
    state2 = BatchState(part.store)  # the crash: state1 never committed
    second = b.after_batch({0: state2}, {0: later}, {0: 3}, 0)
    assert first == second and kinds(first) == [("suspend", "balance_exhausted"), ("note", "balance.exhausted")]


def test_usage_before_the_wallet_started_and_other_currencies_are_not_drawn(tmp_path) -> None:
    _, b, part = on_partition(tmp_path, wallet(1, LOT1))
    out = part.run(b, [row("c1", "3.00", DAY.replace(day=1, month=11), 1), row("c1", "2", at(9), 2, currency="USD"),
                       row("c1", "1.234", at(9), 3)])  # fmt: skip
    assert snapshot(out).balance == "8.77"  # 10.00 - round(1.234)


def test_postpaid_credit_limit_suspends_and_a_new_period_reactivates(tmp_path) -> None:
    _, b, part = on_partition(
        tmp_path,
        customer("c2", {"credit_limit": "5"}),
    )
    assert kinds(part.run(b, [row("c2", "3.00", at(9), 1)])) == []
    out = part.run(b, [row("c2", "2.50", at(9, 5), 2)])  # 5.50 > 5
    assert kinds(out) == [("suspend", "credit_limit_exceeded"), ("note", "credit_limit.exceeded")]
    command = decode_command(out[0][2])
    assert command.state == {"period": "2026-12", "usage": "5.50", "credit_limit": "5"}
    assert kinds(part.run(b, [row("c2", "1", at(9, 6), 3)])) == []  # still over: once per crossing
    out = part.run(b, [row("c2", "1", datetime(2027, 1, 1, 0, 5, tzinfo=UTC), 4, period="2027-01")])
    assert kinds(out) == [("reactivate", "credit_limit_exceeded")]


def test_customers_without_wallet_or_limit_cost_nothing(tmp_path) -> None:
    b = Balances(Settings(), EntityTable())
    part = Partition(tmp_path / "p0")
    assert part.run(b, [row("c9", "1", at(9), 1)]) == []
    assert part.store.get(balance_key(T, "c9")) is None


def test_bad_threshold_metadata_is_left_out_naming_the_field(caplog) -> None:
    from meterstream.billing.thresholds import rules_from_metadata

    rules, errors = rules_from_metadata({"balance_alert_below": "ten", "credit_limit": "100"})
    assert rules.credit_limit == Decimal(100) and rules.balance_below == ()
    assert errors == ["metadata.balance_alert_below: not a decimal number: 'ten'"]


def test_evaluate_follows_priority_then_expiry() -> None:
    # two wallets: priority 1 (5.00) is drawn before priority 50 (10.00); 7.00 of usage -> 0.00 and 8.00
    w1 = WalletDoc(tenant=T, id="A", customer="c1", currency="EUR", rate_amount=Decimal(1), priority=50,
                   started_at=at(0), version=1, entries=[WalletEntryDoc(id="a", kind="paid", units=1000,
                                                                        settled_at=at(0))])  # fmt: skip
    w2 = WalletDoc(tenant=T, id="B", customer="c1", currency="EUR", rate_amount=Decimal("0.5"), priority=1,
                   started_at=at(0), version=1, entries=[WalletEntryDoc(id="b", kind="granted", units=500,
                                                                        settled_at=at(0))])  # fmt: skip
    ev = evaluate([w1, w2], {at(0).isoformat(): "7.00"}, at(12))
    assert ev.balance == 800 and ev.used == 700 and ev.uncovered == 0
    assert {w["id"]: (w["balance"], w["credits"]) for w in ev.wallets} == {"A": ("8.00", "8"), "B": ("0.00", "0")}
    # nothing used: 10.00 EUR = 10 credits at rate 1 (written out, never "1E+1"); B's 5.00 EUR at 0.50 = 10 credits
    ev = evaluate([w1, w2], {}, at(12))
    assert {w["id"]: w["credits"] for w in ev.wallets} == {"A": "10", "B": "10"}


def test_partition_of_is_crc32_of_the_usage_key() -> None:
    import zlib

    assert partition_of("acme", "org-1", 8) == zlib.crc32(b"acme/org-1") % 8


def test_outputs_are_keyed_by_customer(tmp_path) -> None:
    table = EntityTable()
    table.apply(wallet(1, LOT1))
    b = Balances(Settings(), table)
    out = Partition(tmp_path / "p0").run(b, [row("c1", "1", at(9), 1)])
    assert {key for _, key, _ in out} == {b"acme\x1fc1"}
    assert orjson.loads(out[0][2])["wallets"][0]["id"] == "W1"
