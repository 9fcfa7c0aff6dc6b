"""The entity outbox (SQLite and PostgreSQL): same transaction as the change, seq order = commit order."""

from __future__ import annotations

import threading
import time

import pytest
from entity_docs import TENANT, customer, plan, subscription
from sqlalchemy import func, select

from meterstream.entities import outbox
from meterstream.entities.common import NotFound
from meterstream.entities.customers import get_customer_doc, put_customer
from meterstream.entities.outbox import get_relay_position, last_seq, read_outbox, set_relay_position
from meterstream.entities.plans import list_plans, publish_plan
from meterstream.entities.subscriptions import SubscriptionPhaseRow, create_subscription, list_subscriptions
from meterstream.schemas.entities import CustomerDoc, PlanVersionDoc, decode_change


def test_every_write_appends_its_document(sf) -> None:
    c = put_customer(sf, customer())
    p, _ = publish_plan(sf, plan())
    publish_plan(sf, plan())  # unchanged: nothing appended
    rows = read_outbox(sf, 0, 100)
    assert [seq for seq, _, _ in rows] == [1, 2]
    assert rows[0][1] == b"customer\x1facme\x1fc1" and rows[1][1] == b"plan\x1facme\x1fbasic\x1f1"
    assert decode_change(rows[0][2]) == c and decode_change(rows[1][2]) == p
    assert isinstance(decode_change(rows[1][2]), PlanVersionDoc)
    assert read_outbox(sf, 1, 100) == rows[1:] and read_outbox(sf, 0, 1) == rows[:1] and read_outbox(sf, 2, 9) == []
    assert last_seq(sf) == 2


def test_a_failed_outbox_append_leaves_nothing_behind(sf, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(s, docs) -> None:  # type: ignore[no-untyped-def]
        s.flush()  # the entity row is written by now
        raise RuntimeError("disk full")

    monkeypatch.setattr(outbox, "append", broken)
    with pytest.raises(RuntimeError):
        put_customer(sf, customer())
    with pytest.raises(RuntimeError):
        publish_plan(sf, plan())
    monkeypatch.undo()
    with pytest.raises(NotFound):
        get_customer_doc(sf, TENANT, "c1")
    assert list_plans(sf, TENANT) == [] and read_outbox(sf, 0, 10) == []
    put_customer(sf, customer())
    publish_plan(sf, plan())
    monkeypatch.setattr(outbox, "append", broken)
    with pytest.raises(RuntimeError):
        create_subscription(sf, subscription())
    monkeypatch.undo()
    assert list_subscriptions(sf, TENANT) == [] and last_seq(sf) == 2
    with sf() as s:  # no phase row either
        assert s.scalar(select(func.count()).select_from(SubscriptionPhaseRow)) == 0


def test_relay_position(sf) -> None:
    assert get_relay_position(sf, "kafka") == 0
    set_relay_position(sf, "kafka", 7)
    set_relay_position(sf, "other", 2)
    set_relay_position(sf, "kafka", 9)
    assert (get_relay_position(sf, "kafka"), get_relay_position(sf, "other")) == (9, 2)


def test_a_later_write_waits_for_an_open_one_so_seq_order_is_commit_order(sf) -> None:
    """While a writer holds seq N uncommitted, no seq > N can commit: a relay that read up to N+1 never
    misses N (the gap an autoincrement outbox has when two transactions commit out of order)."""
    holder = sf()
    holder.begin()
    outbox.begin_write(holder)
    outbox.append(holder, [customer("first", version=1)])
    done = threading.Event()

    def second() -> None:
        put_customer(sf, customer("second"))
        done.set()

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(1.0)
    assert not done.is_set()  # blocked behind the open transaction
    assert read_outbox(sf, 0, 10) == []
    holder.commit()
    holder.close()
    thread.join(30)
    assert done.is_set()
    ids = [decode_change(v).external_id for _, _, v in read_outbox(sf, 0, 10)]
    assert ids == ["first", "second"]


def test_concurrent_writers_get_contiguous_seqs_and_per_key_versions_in_order(sf) -> None:
    def writer(n: int) -> None:
        for i in range(5):
            put_customer(sf, customer(f"c{n}", name=f"name {i}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    rows = read_outbox(sf, 0, 100)
    assert [seq for seq, _, _ in rows] == list(range(1, 21))
    versions: dict[str, list[int]] = {}
    for _, _, value in rows:
        doc = decode_change(value)
        assert isinstance(doc, CustomerDoc)
        versions.setdefault(doc.external_id, []).append(doc.version)
    assert versions == {f"c{n}": [1, 2, 3, 4, 5] for n in range(4)}
