"""Differential test of the close's forked pricing/issuing (`close_period(workers=)`, `parallel.py`): the same
usage closed with the work in forked workers and all in one process gives the same documents, the same gapless
numbers in the same order, the same failures and unreconciled lines, byte-identical files, the same invoice
store records and the same ClickHouse documents. Two periods: the second has late usage of the first
(adjustments, including a customer with late usage only) and customers that fail (a bad id, two plans)."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.invoice_emitter import close as close_mod
from meterstream.invoice_emitter import parallel
from meterstream.invoice_emitter.close import RECORDS_FILE, close_period
from meterstream.rating.catalog import load_catalog

CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")


def insert(client, db: str, tenant: str, customer: str, period: str, plan: str, meter: str, *qs: str) -> None:
    t = datetime(int(period[:4]), int(period[5:]), 15, tzinfo=UTC)
    rows = [[tenant, uuid.uuid4().hex, customer, "", meter, t, period, Decimal(q), Decimal(0), Decimal(0),
             "USD" if plan == "basic" else "EUR", plan, meter, {}, "", 0, 0] for q in qs]  # fmt: skip
    client.insert(f"{db}.rated_usage", rows, column_names=list(RATED_COLUMNS))


def usage(client, db: str, period: str, late: bool = False) -> None:
    if late:  # usage of September after it was closed, and October's
        insert(client, db, "t1", "c03", "2026-09", "basic", "api_calls", "250")  # adjustment on October's
        insert(client, db, "t1", "late-only", "2026-09", "basic", "api_calls", "40")  # no October usage at all
    for k in range(14):
        insert(client, db, "t1", f"c{k:02d}", period, "basic", "api_calls", str(5 + 17 * k), str(k))
        if k % 3 == 0:
            insert(client, db, "t1", f"c{k:02d}", period, "basic", "storage_gb_hours", f"{k}.125")
    for k in range(5):
        insert(client, db, "t2", f"e{k}", period, "bulk", "api_calls", str(60 * k + 1))
    insert(client, db, "t1", "../bad", period, "basic", "api_calls", "30")  # cannot name its file
    insert(client, db, "t1", "two", period, "basic", "api_calls", "30")
    insert(client, db, "t1", "two", period, "bulk", "api_calls", "30")  # usage under two plans


def closes(client, out: Path, workers: int | None) -> tuple[list, list[bytes], list[tuple], list[str]]:
    db = f"t_{uuid.uuid4().hex[:10]}"
    create_schema(client, db)
    results = []
    usage(client, db, "2026-09")
    results.append(close_period(client, db, CATALOG, "2026-09", out, progress=False, workers=workers))
    usage(client, db, "2026-10", late=True)
    results.append(close_period(client, db, CATALOG, "2026-10", out, progress=False, workers=workers))
    files = [p.read_bytes() for r in results for p in r.files]
    with sqlite3.connect(out / RECORDS_FILE) as con:
        records = con.execute("SELECT tenant, invoice_id, customer, period, status, number, total_minor, document "
                              "FROM invoices ORDER BY number").fetchall()  # fmt: skip
    stored = [row[0] for row in client.query(f"SELECT document FROM {db}.invoices FINAL "
                                             "ORDER BY tenant, customer, period").result_rows]  # fmt: skip
    return results, files, records, stored


@pytest.mark.skipif(not parallel.can_fork(), reason="forking needs Linux and no other Python thread")
def test_forked_close_is_the_one_process_close(
    chdb_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forked: list[int]
) -> None:
    serial, s_files, s_records, s_stored = closes(chdb_client, tmp_path / "serial", workers=0)

    monkeypatch.setattr(close_mod, "FORK_FROM", 1)  # fork for these few customers
    monkeypatch.setattr(parallel, "CHUNK", 2)  # and many small chunks, alternating between two workers
    split, f_files, f_records, f_stored = closes(chdb_client, tmp_path / "forked", workers=2)
    assert len(forked) == 4  # two workers for each period's close

    for a, b in zip(serial, split, strict=True):
        assert b.invoices == a.invoices
        assert b.failed == a.failed
        assert b.unreconciled == a.unreconciled
        assert [p.relative_to(tmp_path / "forked") for p in b.files] == [
            p.relative_to(tmp_path / "serial") for p in a.files
        ]
    assert f_files == s_files
    assert f_records == s_records
    assert f_stored == s_stored

    # what both gave, by hand: 19 invoices in September (14 + 5, none for ../bad and two), numbered 1..14 in
    # t1 and 1..5 in t2 in customer order; October adds the late-only customer's adjustment invoice
    sep, oct_ = split
    assert [(t, c) for t, c, _ in sep.failed] == [("t1", "../bad"), ("t1", "two")]
    assert [d["number"] for d in sep.invoices if d["tenant"] == "t1"] == [f"DEMO-2026-{n:06d}" for n in range(1, 15)]
    assert [d["number"] for d in sep.invoices if d["tenant"] == "t2"] == [f"DEMO-2026-{n:06d}" for n in range(1, 6)]
    by_customer = {d["customer"]: d for d in oct_.invoices}
    # late-only: 40 September calls, 10 free + 30 * 0.50 = 15.00, nothing billed before -> one adjustment line
    late_only = by_customer["late-only"]
    assert [(x["kind"], x["amount"]) for x in late_only["lines"]] == [("adjustment", "15.00")]
    # c03: September 56 + 3 = 59 calls (24.50) billed; with 250 late, 309: 45.00 + 209 * 0.25 = 97.25 -> +72.75
    adjustments = [x for x in by_customer["c03"]["lines"] if x["kind"] == "adjustment"]
    assert [(x["applies_to"], x["quantity"], x["amount"]) for x in adjustments] == [("2026-09", "250", "72.75")]
    assert len(sep.invoices) == 19 and len(oct_.invoices) == 20 and Decimal(late_only["total"]) == Decimal("15.00")


@pytest.mark.skipif(not parallel.can_fork(), reason="forking needs Linux and no other Python thread")
@pytest.mark.parametrize(("spare", "forks"), [(0, 0), (1, 2)])
def test_by_default_a_worker_only_on_a_spare_core(
    chdb_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forked: list[int], spare: int, forks: int
) -> None:
    monkeypatch.setattr(close_mod, "FORK_FROM", 1)
    monkeypatch.setattr(close_mod, "spare_cores", lambda *_: spare)  # a busy machine (0), one idle core (1)
    results, *_ = closes(chdb_client, tmp_path / "default", workers=None)
    assert len(forked) == forks  # one worker per close of the two periods, or none
    assert [len(r.invoices) for r in results] == [19, 20]
