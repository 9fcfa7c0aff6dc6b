"""A session whose cost reaches a `disconnect` cap: one `disconnect` command on the provisioning topic, produced with
the batch through the processor's path (step.process -> the partition's outbox -> Balances.after_batch), applied
once by the reference consumer.

Plan of tests/processor/test_sessions.py (national 60/60, 0.10 connect fee, 0.06/min peak; the session starts
Tuesday 3 November 2026 10:00 Berlin, peak) with the session rule `{destination: DE_FIXED, band: peak, amount:
"0.20", strategy: disconnect}`. Record 1 (30 s): 0.10 + 0.06 = 0.16, under the cap. Record 2 (45 s, 30..75 s)
opens the second minute: 0.16 + 0.06 = 0.22 > 0.20, so it charges 0.04 and the session is to be cut at the end of
that minute, 120 s. Record 3 (60 s, 75..135 s, final): the third minute starts at 120 s, after the cut: 0.00, and
no second command.
"""

from __future__ import annotations

from collections import Counter

import yaml
from test_sessions import NOW, PLANS, WINDOW, record

from meterstream.deploy.provisioning_consumer import ProvisioningState
from meterstream.processor.balances import Balances
from meterstream.processor.live_catalog import EntityTable
from meterstream.processor.step import Kind, Position, process
from meterstream.processor.store import BatchState, PartitionStore
from meterstream.rating.catalog import parse_catalog
from meterstream.schemas.provisioning import decode_command
from meterstream.schemas.rated import row_of
from meterstream.schemas.settings import Settings

CAP = 'sessions: {max_cost: [{destination: DE_FIXED, band: peak, amount: "0.20", strategy: disconnect}]}'


def capped_catalog():
    data = yaml.safe_load(PLANS.replace("BUNDLES", CAP))
    data["assignments"] = [a for a in data["assignments"] if a["customer"] == "*"]
    return parse_catalog(data)


CATALOG = capped_catalog()


def run(store: PartitionStore, b: Balances, values: list[bytes], first: int) -> tuple[list, list]:
    """One batch through `step.process` and `Balances.after_batch`, committed: (outcomes, outputs)."""
    state = BatchState(store)
    outs = [process(CATALOG, state, v, Position("usage", 0, first + i, None, NOW + (first + i) * 1000), NOW, WINDOW)
            for i, v in enumerate(values)]  # fmt: skip
    out = b.after_batch({0: state}, {0: [row_of(o.rated) for o in outs if o.rated]}, {}, NOW)
    state.commit(first + len(values), Counter())
    return outs, out


def commands(out) -> list:
    return [decode_command(v) for t, _, v in out if t.endswith("provisioning")]


def test_a_disconnect_cap_sends_one_disconnect_command_per_session(tmp_path) -> None:
    store = PartitionStore(tmp_path / "p0")
    try:
        b = Balances(Settings(), EntityTable())  # no wallet, no credit limit: only the session's messages
        outs, out = run(store, b, [record("r1", 1, "30"), record("r2", 2, "45")], 0)
        assert [o.rated["amount"] for o in outs] == ["0.1600", "0.0400"]
        [cmd] = commands(out)
        assert (cmd.command, cmd.reason, cmd.tenant, cmd.customer) == ("disconnect", "session_max_cost", "telco",
                                                                       "line-1")  # fmt: skip
        assert cmd.state == {"session_id": "c-81", "meter": "voice_seconds", "band": "peak", "max_cost": "0.20",
                             "cost": "0.2000", "currency": "EUR", "disconnect_at": "120", "usage": "75",
                             "destination": "DE_FIXED"}  # fmt: skip
        assert cmd.at == "2026-11-03T10:00:01.000Z"  # record 2's Kafka timestamp
        assert [t for t, _, _ in out] == ["provisioning"] and out[0][1] == b"telco\x1fline-1"  # keyed by customer

        outs, out = run(store, b, [record("r3", 3, "60", final=True)], 2)
        assert outs[0].kind is Kind.RATED and outs[0].rated["amount"] == "0.0000"  # after the cut: not charged
        assert commands(out) == []  # one command per session

        # the same records again on a fresh partition (a replay from scratch): the same command, byte for byte
        again = PartitionStore(tmp_path / "again")
        try:
            _, out2 = run(again, Balances(Settings(), EntityTable()), [record("r1", 1, "30"), record("r2", 2, "45")], 0)
        finally:
            again.close()
        assert commands(out2) == [cmd]

        # the reference consumer applies it once and cuts the session, not the customer
        consumer = ProvisioningState(tmp_path / "prov.sqlite")
        try:
            first, repeat = consumer.apply(cmd), consumer.apply(cmd)
            assert first.new and not repeat.new
            assert consumer.disconnected("telco", "line-1") == ["c-81"]
            assert consumer.state("telco", "line-1") == "active"
            assert "disconnect session_max_cost session 'c-81'" in first.line()
        finally:
            consumer.close()
    finally:
        store.close()


def test_a_session_under_its_cap_sends_nothing(tmp_path) -> None:
    store = PartitionStore(tmp_path / "p0")
    try:
        outs, out = run(store, Balances(Settings(), EntityTable()), [record("r1", 1, "30", final=True)], 0)
        assert outs[0].rated["amount"] == "0.1600" and out == []
    finally:
        store.close()
