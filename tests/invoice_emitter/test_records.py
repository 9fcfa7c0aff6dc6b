"""invoice_emitter/records.py: a batch of drafts finalized in one transaction gets the numbers, records and
lifecycle events the store's per-invoice path gives (entities/invoices.py), on SQLite."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import msgspec
import orjson
from sqlalchemy import select

from meterstream.entities import invoices
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.invoice_emitter.issue import Issuing, issue_draft
from meterstream.invoice_emitter.records import Recorder
from meterstream.webhooks.events import WebhookOutboxRow


def v1(customer: str, total: str) -> dict:
    return {"document_version": 1, "invoice_id": f"INV-202610-{customer}", "status": "final", "tenant": "t1",
            "customer": customer, "period": "2026-10", "plan": "basic", "currency": "USD",
            "lines": [{"line_no": 1, "meter": "api_calls", "description": "api calls", "quantity": "90",
                       "amount": total}] if total != "0.00" else [],
            "subtotal": total, "tax": "0", "total": total}  # fmt: skip


def store(tmp_path: Path):
    engine = make_engine(url=f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine=engine)
    return session_factory(engine)


def test_a_batch_is_numbered_in_order_with_the_stores_rules(tmp_path: Path) -> None:
    sf = store(tmp_path)
    issuing = Issuing.default()
    recorder = Recorder(sf, issuing)
    # before the batch: c2 already finalized (a close that stopped after recording it), c3 a draft kept by the API
    done = recorder.finalize(issue_draft(v1("c2", "7.00"), issuing))
    assert done.number == "DEMO-2026-000001"
    d3 = issue_draft(v1("c3", "3.00"), issuing)
    invoices.upsert_draft(sf, tenant="t1", invoice_id=d3.id, customer="c3", period="2026-10", currency="USD",
                          total="2.00", issue_date=date(2026, 11, 1), due_date=date(2026, 11, 1),
                          document=msgspec.json.encode(d3))  # fmt: skip
    batch = [issue_draft(v1(c, t), issuing) for c, t in (("c1", "40.00"), ("c2", "9.99"), ("c3", "3.00"),
                                                          ("c4", "0.00"), ("c5", "-1.00"))]  # fmt: skip
    out = recorder.finalize_many(batch)
    # c3 (the existing draft) goes through the store's path first in the batch: 000002; then the new ones in
    # order: c1 000003, c4 000004; c2 keeps its stored document (7.00, not 9.99); c5's negative total is refused
    assert [getattr(x, "number", None) for x in out] == [
        "DEMO-2026-000003", "DEMO-2026-000001", "DEMO-2026-000002", "DEMO-2026-000004", None]
    assert out[1] == done and out[1].total == Decimal("7.00")
    assert isinstance(out[4], ValueError) and str(out[4]).startswith("total")
    by_id = {r.customer: r for r in invoices.list_invoices(sf, "t1")}
    assert sorted(by_id) == ["c1", "c2", "c3", "c4"]
    assert (by_id["c1"].status, by_id["c1"].total_minor, by_id["c1"].amount_due_minor) == ("finalized", 4000, 4000)
    assert (by_id["c3"].status, by_id["c3"].total_minor) == ("finalized", 300)  # the draft replaced: 3.00
    assert (by_id["c4"].status, by_id["c4"].amount_due_minor) == ("paid", 0)  # nothing due: paid at once
    assert msgspec.json.decode(by_id["c1"].document)["number"] == "DEMO-2026-000003"
    # lifecycle events as the per-invoice path appends them: created, finalized (paid for a zero invoice)
    with sf() as s:
        rows = s.execute(select(WebhookOutboxRow.subject, WebhookOutboxRow.type, WebhookOutboxRow.body)
                         .order_by(WebhookOutboxRow.seq)).all()  # fmt: skip
    got = [(subject.rsplit("-", 1)[1], type_) for subject, type_, _ in rows]
    assert got[-5:] == [("c1", "invoice.created"), ("c1", "invoice.finalized"), ("c4", "invoice.created"),
                        ("c4", "invoice.finalized"), ("c4", "invoice.paid")]  # fmt: skip
    finalized = orjson.loads(rows[-4][2])["data"]
    assert (finalized["number"], finalized["status"], finalized["previous_status"], finalized["total"]) == (
        "DEMO-2026-000003", "finalized", "draft", "40.00")
    assert ("c3", "invoice.finalized") in got and ("c2", "invoice.finalized") in got


def test_drafts_are_stored_and_replaced_in_bulk_without_numbers(tmp_path: Path) -> None:
    sf = store(tmp_path)
    issuing = Issuing.default()
    recorder = Recorder(sf, issuing)
    done = recorder.finalize(issue_draft(v1("c2", "7.00"), issuing))  # issued before: never changed
    first = [issue_draft(v1(c, t), issuing) for c, t in (("c1", "40.00"), ("c2", "9.99"), ("c3", "-1.00"))]
    out = recorder.upsert_drafts(first)
    assert out[0] == first[0]
    assert isinstance(out[1], ValueError) and out[1].field == "status"  # type: ignore[attr-defined]
    assert isinstance(out[2], ValueError) and str(out[2]).startswith("total")
    # usage arrives: c1's draft is replaced (no new event), c4 is new
    again = [issue_draft(v1(c, t), issuing) for c, t in (("c1", "41.50"), ("c4", "0.00"))]
    assert recorder.upsert_drafts(again) == again
    by_id = {r.customer: r for r in invoices.list_invoices(sf, "t1")}
    assert sorted(by_id) == ["c1", "c2", "c4"]
    c1 = by_id["c1"]
    assert (c1.status, c1.number, c1.total_minor, c1.amount_due_minor, c1.version) == ("draft", None, 4150, 4150, 2)
    assert msgspec.json.decode(c1.document)["total"] == "41.50"
    assert (by_id["c2"].status, by_id["c2"].number, by_id["c2"].total_minor) == ("finalized", done.number, 700)
    assert (by_id["c4"].status, by_id["c4"].total_minor) == ("draft", 0)  # a draft is never paid
    with sf() as s:
        rows = s.execute(select(WebhookOutboxRow.subject, WebhookOutboxRow.type, WebhookOutboxRow.body)
                         .order_by(WebhookOutboxRow.seq)).all()  # fmt: skip
    got = [(subject.rsplit("-", 1)[1], type_) for subject, type_, _ in rows]
    assert got[-2:] == [("c1", "invoice.created"), ("c4", "invoice.created")]
    created = orjson.loads(rows[-2][2])["data"]
    assert (created["status"], created["number"], created["total"], created["version"]) == ("draft", None, "40.00", 1)
    # the store's own path finalizes a bulk draft: the next number, the replaced document
    final = recorder.finalize_many([issue_draft(v1("c1", "41.50"), issuing)])
    assert final[0].number == "DEMO-2026-000002" and final[0].total == Decimal("41.50")
    # a draft of the same id for another customer is refused, naming the field
    other = msgspec.structs.replace(issue_draft(v1("c9", "1.00"), issuing), id=again[1].id)
    (refused,) = recorder.upsert_drafts([other])
    assert isinstance(refused, ValueError) and refused.field == "customer"  # type: ignore[attr-defined]


def test_batch_ulids_have_the_stores_format() -> None:
    from datetime import UTC, datetime

    from meterstream.entities.common import new_ulid
    from meterstream.invoice_emitter.records import _ulids

    now = datetime(2026, 12, 1, 13, 45, 20, 838507, tzinfo=UTC)
    ids = _ulids(50, now)
    one = new_ulid(now.timestamp())
    # 48-bit milliseconds in the first 10 characters (identical), 80 random bits in the other 16
    assert {i[:10] for i in ids} == {one[:10]} and len(set(ids)) == 50
    assert all(len(i) == 26 and set(i) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for i in ids)
    # decoded back, the time part is the instant's milliseconds
    value = 0
    for ch in ids[0]:
        value = value * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(ch)
    assert value >> 80 == 1_796_132_720_838  # 20,788 days + 13:45:20.838 after 1970-01-01
