"""invoice_emitter/records.py: a batch of drafts finalized in one transaction gets the numbers, records and
lifecycle events the store's per-invoice path gives (entities/invoices.py), drafts the store holds already
included (a differential test on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import msgspec
import orjson
import pytest
from sqlalchemy import select

from meterstream.entities import invoices
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.entities.numbering import InvoiceNumberRow as NumberRow
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
    # numbers in the order built, the stored draft c3 among the new ones: c1 000002, c3 000003, c4 000004; c2 keeps
    # its stored document (7.00, not 9.99); c5's negative total is refused
    assert [getattr(x, "number", None) for x in out] == [
        "DEMO-2026-000002", "DEMO-2026-000001", "DEMO-2026-000003", "DEMO-2026-000004", None]  # fmt: skip
    assert out[1] == done and out[1].total == Decimal("7.00")
    assert isinstance(out[4], ValueError) and str(out[4]).startswith("total")
    by_id = {r.customer: r for r in invoices.list_invoices(sf, "t1")}
    assert sorted(by_id) == ["c1", "c2", "c3", "c4"]
    assert (by_id["c1"].status, by_id["c1"].total_minor, by_id["c1"].amount_due_minor) == ("finalized", 4000, 4000)
    assert (by_id["c3"].status, by_id["c3"].total_minor) == ("finalized", 300)  # the draft replaced: 3.00
    assert (by_id["c4"].status, by_id["c4"].amount_due_minor) == ("paid", 0)  # nothing due: paid at once
    assert msgspec.json.decode(by_id["c1"].document)["number"] == "DEMO-2026-000002"
    # lifecycle events as the per-invoice path appends them: created, finalized (paid for a zero invoice)
    with sf() as s:
        rows = s.execute(select(WebhookOutboxRow.subject, WebhookOutboxRow.type, WebhookOutboxRow.body)
                         .order_by(WebhookOutboxRow.seq)).all()  # fmt: skip
    got = [(subject.rsplit("-", 1)[1], type_) for subject, type_, _ in rows]
    # in the order built; the stored draft c3 has no second created event (replacing a draft is none)
    assert got[-6:] == [("c1", "invoice.created"), ("c1", "invoice.finalized"), ("c3", "invoice.finalized"),
                        ("c4", "invoice.created"), ("c4", "invoice.finalized"), ("c4", "invoice.paid")]  # fmt: skip
    finalized = orjson.loads(rows[-5][2])["data"]
    assert (finalized["number"], finalized["status"], finalized["previous_status"], finalized["total"]) == (
        "DEMO-2026-000002",
        "finalized",
        "draft",
        "40.00",
    )
    c3 = orjson.loads(rows[-4][2])["data"]  # stored at version 1, replaced (2), then finalized
    assert (c3["number"], c3["total"], c3["version"]) == ("DEMO-2026-000003", "3.00", 2)
    assert got.count(("c3", "invoice.created")) == 1 and ("c2", "invoice.finalized") in got


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


# --- the bulk path and the per-record path, side by side ----------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list]:
    """Two empty, migrated invoice stores on one database kind (PostgreSQL: the session's throwaway cluster)."""
    cluster = request.getfixturevalue("pg_cluster") if request.param == "postgresql" else None
    urls = [cluster.create_database() for _ in "ab"] if cluster else [f"sqlite:///{tmp_path / n}.db" for n in "ab"]
    engines = [make_engine(url=u) for u in urls]
    for engine in engines:
        migrate(engine=engine)
    yield [session_factory(engine) for engine in engines]
    for engine in engines:
        engine.dispose()
    for url in urls if cluster else ():
        cluster.drop_database(url)


def _prepare(sf, issuing: Issuing) -> list:
    """The same store state before the close, written by the store's own per-record functions; the close's batch."""
    recorder = Recorder(sf, issuing)
    recorder.finalize(issue_draft(v1("c2", "7.00"), issuing))  # issued before: DEMO-2026-000001
    recorder.finalize(issue_draft(v1("c11", "8.00"), issuing))  # DEMO-2026-000002, then voided
    invoices.void(sf, "t1", "INV-202610-c11", "sent to the wrong address")

    def kept(customer: str, total: str, *, owner: str | None = None, currency: str = "USD") -> None:
        d = issue_draft(v1(customer, total), issuing)
        invoices.upsert_draft(sf, tenant="t1", invoice_id=d.id, customer=owner or customer, period="2026-10",
                              currency=currency, total=total, issue_date=date(2026, 11, 1),
                              due_date=date(2026, 11, 1), document=msgspec.json.encode(d))  # fmt: skip

    kept("c3", "2.00")
    kept("c3", "2.50")  # replaced once by a refresh: version 2
    kept("c6", "5.00")
    kept("c7", "1.00")
    kept("c8", "1.00", owner="someone-else")
    kept("c9", "1.00", currency="EUR")
    c10 = issue_draft(v1("c10", "6.00"), issuing)  # issued in January 2027: the 2027 numbers
    c10 = msgspec.structs.replace(c10, issue_date=date(2027, 1, 4), due_date=date(2027, 2, 3))
    return [issue_draft(v1(c, t), issuing) for c, t in (("c1", "40.00"), ("c2", "9.99"), ("c3", "3.00"),
                                                        ("c4", "0.00"), ("c5", "-1.00"), ("c6", "0.00"),
                                                        ("c7", "-2.00"), ("c8", "1.00"), ("c9", "1.00"))] + [
        c10, *(issue_draft(v1(c, t), issuing) for c, t in (("c11", "8.00"), ("c12", "12.34")))]  # fmt: skip


def _records(sf) -> list[tuple]:
    """Every invoice row, by invoice id, without the surrogate key and the wall-clock columns (finalized or not)."""
    cols = [c for c in invoices.InvoiceRow.__table__.c if c.name not in CLOCKS]
    row = invoices.InvoiceRow
    with sf() as s:
        rows = s.execute(select(*cols, row.finalized_at, row.voided_at).order_by(row.invoice_id))
        return [(*r[:-2], r[-2] is not None, r[-1] is not None) for r in rows]


CLOCKS = {"id", "created_at", "updated_at", "finalized_at", "voided_at"}


def _events(sf) -> list[tuple]:
    """Every lifecycle event, in the outbox's order, without its id and clock (each checked for its form)."""
    out = []
    with sf() as s:
        for row in s.execute(select(WebhookOutboxRow).order_by(WebhookOutboxRow.seq)).scalars():
            body = orjson.loads(row.body)
            assert body["id"] == row.event_id and len(row.event_id) == 30 and row.event_id.startswith("msg_")
            assert body["type"] == row.type and body["timestamp"].endswith("Z")
            data = body["data"]
            stamped = data.pop("finalized_at")
            assert (stamped is not None) == (data["status"] != "draft")
            assert (data.pop("voided_at") is not None) == (data["status"] == "voided")
            out.append((row.tenant, row.type, row.subject, row.key, data))
    return out


def test_a_batch_with_stored_drafts_records_what_the_per_record_path_records(two_stores: list) -> None:
    bulk_sf, one_sf = two_stores
    issuing = Issuing.default()
    batch = _prepare(bulk_sf, issuing)
    assert _prepare(one_sf, issuing) == batch
    before = len(_events(bulk_sf))
    bulk = Recorder(bulk_sf, issuing).finalize_many(batch)
    one_recorder = Recorder(one_sf, issuing)
    single: list = []
    for draft in batch:  # the per-record path, one transaction per invoice, in the order built
        try:
            single.append(one_recorder.finalize(draft))
        except ValueError as exc:
            single.append(exc)
    # by hand: 000001 (c2) and 000002 (c11, voided) were given before; then, in the order built, every new or
    # stored draft that is accepted: c1, c3, c4, c6, c12 in 2026, c10 alone in 2027; none for the refused
    expected = [
        "DEMO-2026-000003",
        "DEMO-2026-000001",
        "DEMO-2026-000004",
        "DEMO-2026-000005",
        None,
        "DEMO-2026-000006",
        None,
        None,
        None,
        "DEMO-2027-000001",
        "DEMO-2026-000002",
        "DEMO-2026-000007",
    ]
    for out in (bulk, single):
        assert [getattr(x, "number", None) for x in out] == expected
        assert [getattr(x, "field", None) for x in out] == [None] * 4 + ["total", None, "total", "customer",
                                                             "currency", None, None, None]  # fmt: skip
    for got, want in zip(bulk, single, strict=True):
        assert type(got) is type(want)
        assert got == want if not isinstance(got, ValueError) else str(got) == str(want)
    assert bulk[2].total == Decimal("3.00") and bulk[1].total == Decimal("7.00")  # type: ignore[union-attr]
    # the records, row by row, on both stores
    rows, one_rows = _records(bulk_sf), _records(one_sf)
    assert rows == one_rows
    by_customer = {r[2]: r for r in rows}
    names = [c.name for c in invoices.InvoiceRow.__table__.c if c.name not in CLOCKS]

    def field(customer: str, name: str) -> object:
        return by_customer[customer][names.index(name)]

    # by hand: c3 stored at version 2, replaced (3) and finalized (4) at 3.00; c6 0.00: paid at once, version 4 too
    assert [field("c3", n) for n in ("status", "total_minor", "amount_due_minor", "version")] == [
        "finalized",
        300,
        300,
        4,
    ]
    assert [field("c6", n) for n in ("status", "total_minor", "amount_due_minor", "version")] == ["paid", 0, 0, 3]
    assert [field("c7", n) for n in ("status", "total_minor", "number")] == ["draft", 100, None]  # untouched
    assert field("someone-else", "status") == "draft" and field("c9", "currency") == "EUR"
    assert [field("c11", n) for n in ("status", "number")] == ["voided", "DEMO-2026-000002"]
    # the lifecycle events, in order, on both stores
    events_bulk, events_one = _events(bulk_sf), _events(one_sf)
    assert events_bulk == events_one
    got = [(subject.rsplit("-", 1)[1], type_) for _, type_, subject, _, _ in events_bulk[before:]]
    assert got == [("c1", "invoice.created"), ("c1", "invoice.finalized"), ("c3", "invoice.finalized"),
                   ("c4", "invoice.created"), ("c4", "invoice.finalized"), ("c4", "invoice.paid"),
                   ("c6", "invoice.finalized"), ("c6", "invoice.paid"), ("c10", "invoice.created"),
                   ("c10", "invoice.finalized"), ("c12", "invoice.created"), ("c12", "invoice.finalized")]  # fmt: skip
    c6_paid = events_bulk[before + 7][4]
    assert (c6_paid["status"], c6_paid["previous_status"], c6_paid["total"], c6_paid["version"]) == (
        "paid",
        "finalized",
        "0.00",
        3,
    )
    # the counters: 7 numbers in 2026, 1 in 2027, on both stores
    for sf in two_stores:
        with sf() as s:
            counters = s.execute(select(NumberRow.year, NumberRow.last).order_by(NumberRow.year)).all()
        assert [tuple(c) for c in counters] == [(2026, 7), (2027, 1)]


def test_a_stored_draft_that_changed_under_the_batch_sends_the_batch_to_the_per_record_path(
    two_stores: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import update

    from meterstream.invoice_emitter import records

    sf = two_stores[0]
    issuing = Issuing.default()
    recorder = Recorder(sf, issuing)
    batch = [issue_draft(v1(c, "5.00"), issuing) for c in ("c1", "c2", "c3")]
    assert recorder.upsert_drafts(batch[1:]) == batch[1:]  # c2, c3 kept current as drafts
    read = records._stored

    def read_then_changed(s, drafts, *columns, lock=False):
        rows = read(s, drafts, *columns, lock=lock)
        if lock:  # what the bulk path read as a draft is issued by the time it writes (a writer the lock missed)
            s.execute(update(invoices.InvoiceRow).where(invoices.InvoiceRow.invoice_id == batch[2].id)
                      .values(status="finalized"))  # fmt: skip
        return rows

    monkeypatch.setattr(records, "_stored", read_then_changed)
    one_by_one: list[str] = []
    finalize = Recorder.finalize
    monkeypatch.setattr(Recorder, "finalize", lambda self, d: one_by_one.append(d.customer) or finalize(self, d))
    out = recorder.finalize_many(batch)
    # the batch was rolled back (the change with it) and each draft finalized on its own, numbers in order
    assert one_by_one == ["c1", "c2", "c3"]
    assert [d.number for d in out] == ["DEMO-2026-000001", "DEMO-2026-000002", "DEMO-2026-000003"]  # type: ignore[union-attr]
    assert [(r.customer, r.status, r.version) for r in invoices.list_invoices(sf, "t1")] == [
        ("c1", "finalized", 2), ("c2", "finalized", 3), ("c3", "finalized", 3)]  # fmt: skip


def test_a_draft_refresh_never_writes_over_an_invoice_issued_under_it(
    two_stores: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import update

    from meterstream.invoice_emitter import records

    sf = two_stores[0]
    issuing = Issuing.default()
    recorder = Recorder(sf, issuing)
    first = [issue_draft(v1(c, "5.00"), issuing) for c in ("c1", "c2")]
    assert recorder.upsert_drafts(first) == first
    read = records._stored
    changed: list[str] = []

    def read_then_issued(s, drafts, *columns, lock=False):
        rows = read(s, drafts, *columns, lock=lock)
        if lock and not changed:  # c2 read as a draft, issued by the time the refresh writes (a writer the lock missed)
            changed.append("c2")
            s.execute(update(invoices.InvoiceRow).where(invoices.InvoiceRow.invoice_id == first[1].id)
                      .values(status="finalized", number="X-1"))  # fmt: skip
        return rows

    monkeypatch.setattr(records, "_stored", read_then_issued)
    again = [issue_draft(v1(c, "6.00"), issuing) for c in ("c1", "c2")]
    assert recorder.upsert_drafts(again) == again  # rolled back (the change with it), then one by one
    # each replaced once, by the per-record path: 6.00, version 2; nothing kept of the batch's transaction
    got = [(r.customer, r.status, r.total_minor, r.version, r.number) for r in invoices.list_invoices(sf, "t1")]
    assert got == [("c1", "draft", 600, 2, None), ("c2", "draft", 600, 2, None)]
