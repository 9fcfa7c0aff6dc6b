"""The invoice ledger on embedded ClickHouse: documents and lines stored exactly as the documents say."""

from __future__ import annotations

import uuid
from decimal import Decimal

import msgspec
import orjson
import pytest

from meterstream.aggregation.ddl import create_schema
from meterstream.invoice_emitter.document import empty_invoice, with_lines
from meterstream.invoice_emitter.ledger import mark_closed, newest_closed, store_invoices, stored_invoices


def docs() -> list[dict]:
    usage = {"meter": "api_calls", "description": 'api "calls"\t×\n\\ ünïcode', "quantity": "1250.750000000001",
             "events": 2, "precise_amount": "0.123456789", "amount": "0.12"}  # fmt: skip
    late = {"kind": "adjustment", "applies_to": "2026-09", "meter": "sms", "line_key": "sms/EU/peak",
            "description": "late usage for 2026-09: sms", "quantity": "-3", "amount": "-27.50"}  # fmt: skip
    return [  # in the order of the table's key (tenant, customer): "/" sorts before "1"
        with_lines(empty_invoice("t1", "c/2", "2026-10", "basic", "USD"), [usage]),
        with_lines(empty_invoice("t1", "c1", "2026-10", "basic", "USD"), [usage, late]),
        empty_invoice("t2", "x", "2026-10", "bulk", "EUR"),
    ]


@pytest.mark.parametrize("chunk", [1, 20_000])
def test_documents_and_lines_are_stored_as_written(chdb_client, db: str, chunk: int) -> None:
    store_invoices(chdb_client, db, docs(), chunk=chunk)
    assert stored_invoices(chdb_client, db, "2026-10") == docs()
    invoices = chdb_client.query(
        f"SELECT tenant, customer, invoice_id, subtotal, total, line_count FROM {db}.invoices FINAL ORDER BY 1, 2"
    ).result_rows
    assert invoices == [
        ("t1", "c/2", docs()[0]["invoice_id"], Decimal("0.12"), Decimal("0.12"), 1),
        ("t1", "c1", docs()[1]["invoice_id"], Decimal("-27.38"), Decimal("-27.38"), 2),
        ("t2", "x", docs()[2]["invoice_id"], Decimal(0), Decimal(0), 0),
    ]
    lines = chdb_client.query(
        f"""SELECT customer, line_no, meter, description, quantity, amount, currency, line_key, applies_to, kind
            FROM {db}.invoice_lines FINAL ORDER BY customer, line_no"""
    ).result_rows
    assert lines == [
        ("c/2", 1, "api_calls", 'api "calls"\t×\n\\ ünïcode', Decimal("1250.750000000001"), Decimal("0.12"), "USD",
         "api_calls", "2026-10", "usage"),
        ("c1", 1, "api_calls", 'api "calls"\t×\n\\ ünïcode', Decimal("1250.750000000001"), Decimal("0.12"), "USD",
         "api_calls", "2026-10", "usage"),
        ("c1", 2, "sms", "late usage for 2026-09: sms", Decimal(-3), Decimal("-27.50"), "USD", "sms/EU/peak",
         "2026-09", "adjustment"),
    ]  # fmt: skip
    stored = chdb_client.query(f"SELECT document FROM {db}.invoices FINAL ORDER BY tenant, customer").result_rows
    assert [r[0] for r in stored] == [orjson.dumps(d).decode() for d in docs()]  # the compact JSON text, exactly
    closed_at = chdb_client.query(f"SELECT DISTINCT closed_at FROM {db}.invoice_lines").result_rows
    assert len(closed_at) == 1  # one close, one time


def test_storing_again_replaces_rows(chdb_client, db: str) -> None:
    store_invoices(chdb_client, db, docs())
    store_invoices(chdb_client, db, docs())
    assert chdb_client.query(f"SELECT count() FROM {db}.invoice_lines FINAL").result_rows == [(3,)]
    assert stored_invoices(chdb_client, db, "2026-10") == docs()


def test_documents_already_encoded_are_stored_as_given(chdb_client, db: str) -> None:
    """`encoded`: the caller's JSON of a document is the stored text as it is (here its keys in reverse order, so
    a second encoding would show); None falls back to encoding the document; the columns come from the documents."""
    given = [orjson.dumps(dict(reversed(docs()[0].items()))), None, orjson.dumps(dict(reversed(docs()[2].items())))]
    store_invoices(chdb_client, db, docs(), encoded=given)
    stored = chdb_client.query(f"SELECT document FROM {db}.invoices FINAL ORDER BY tenant, customer").result_rows
    assert [r[0] for r in stored] == [given[0].decode(), orjson.dumps(docs()[1]).decode(), given[2].decode()]
    assert given[0].decode() != orjson.dumps(docs()[0]).decode()
    totals = chdb_client.query(f"SELECT customer, total FROM {db}.invoices FINAL ORDER BY 1").result_rows
    assert totals == [("c/2", Decimal("0.12")), ("c1", Decimal("-27.38")), ("x", Decimal(0))]


def test_encoded_version_2_documents_give_the_rows_of_their_dicts(chdb_client, db: str) -> None:
    """`store_encoded` (a close's batches, from the documents' bytes) stores what `store_invoices` stores of the
    same documents as dicts: the same invoice and line rows, and each document's text as given. A fee line (here a
    fixed charge) has no meter, as in `store_invoices`."""
    from meterstream.invoice_emitter.ledger import store_encoded
    from meterstream.schemas.invoice import InvoiceLine, encode, from_v1

    v2 = [from_v1(d) for d in docs()]
    fee = InvoiceLine(line_no=3, kind="fixed", code="platform", description="Platform fee", quantity=Decimal(1),
                      amount=Decimal("10.00"))  # fmt: skip
    v2[1] = msgspec.structs.replace(v2[1], lines=[*v2[1].lines, fee], subtotal=Decimal("-17.38"),
                                    total=Decimal("-17.38"), amount_due=Decimal("-17.38"))  # fmt: skip
    other = f"t_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, other)
    store_invoices(chdb_client, other, [msgspec.to_builtins(d) for d in v2])
    store_encoded(chdb_client, db, [encode(d) for d in v2])
    columns = "customer, line_no, meter, description, quantity, amount, currency, line_key, applies_to, kind"
    rows = {
        name: (
            chdb_client.query(f"SELECT * EXCEPT closed_at FROM {name}.invoices FINAL ORDER BY 1, 2").result_rows,
            chdb_client.query(f"SELECT {columns} FROM {name}.invoice_lines FINAL ORDER BY 1, 2").result_rows,
        )
        for name in (db, other)
    }
    assert rows[db] == rows[other]
    invoices, lines = rows[db]
    assert [(r[1], r[6], r[7], r[8]) for r in invoices] == [  # customer, subtotal, total, line_count
        ("c/2", Decimal("0.12"), Decimal("0.12"), 1), ("c1", Decimal("-17.38"), Decimal("-17.38"), 3),
        ("x", Decimal(0), Decimal(0), 0),
    ]  # fmt: skip
    assert [r[:3] + r[7:] for r in lines if r[0] == "c1"] == [
        ("c1", 1, "api_calls", "api_calls", "2026-10", "usage"),
        ("c1", 2, "sms", "sms/EU/peak", "2026-09", "adjustment"),
        ("c1", 3, "", "", "2026-10", "fixed"),
    ]
    stored = chdb_client.query(f"SELECT document FROM {db}.invoices FINAL ORDER BY tenant, customer").result_rows
    assert [r[0] for r in stored] == [encode(d).decode() for d in v2]


def test_newest_closed_month(chdb_client, db: str) -> None:
    """What `meterstream catalog apply` bounds new subscriptions by: the newest label in `period_closes`; None when
    nothing is closed, and when the database has no such table (a store no close wrote to)."""
    assert newest_closed(chdb_client, db) is None
    mark_closed(chdb_client, db, "2026-10")
    mark_closed(chdb_client, db, "2026-09")  # an earlier month closed later (a re-run): still October
    assert newest_closed(chdb_client, db) == "2026-10"
    bare = f"t_{uuid.uuid4().hex[:10]}"
    chdb_client.command(f"CREATE DATABASE {bare}")
    assert newest_closed(chdb_client, bare) is None
