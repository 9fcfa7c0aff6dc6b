"""Gapless invoice numbers (entities/numbering.py), on SQLite and PostgreSQL: sequence, year change, series,
issuers and tenants apart, a rolled-back finalization consumes nothing, finalizing twice gives the same
number, ten concurrent finalizations give 1..10."""

from __future__ import annotations

import json
import threading
from datetime import date

import pytest
from invoice_helpers import AT, TENANT, draft
from sqlalchemy import func, select

from meterstream.entities import invoices, numbering
from meterstream.entities.common import Conflict, Invalid


def test_format_is_prefix_year_and_six_digits() -> None:
    assert numbering.format_number("ACME", "INV", 2026, 123) == "ACME-2026-000123"
    assert numbering.format_number("ACME", "CN", 2026, 1) == "ACME-CN-2026-000001"
    assert numbering.format_number("ACME", "INV", 2026, 1234567) == "ACME-2026-1234567"  # grows, stays unique
    assert numbering.format_number("ACME", "INV", 2027, 5, "{prefix}/{year}/{seq:04d}") == "ACME/2027/0005"
    for bad in ("{prefix}-{seq:06d}", "{prefix}-{year}", "{prefix}-{year}-{seq:06d}-{other}"):
        with pytest.raises(Invalid) as exc:
            numbering.format_number("ACME", "INV", 2026, 1, bad)
        assert exc.value.field == "template"


def test_numbers_follow_each_other_from_one(sf) -> None:
    numbers = []
    for i in range(3):
        draft(sf, f"inv-{i}")
        numbers.append(invoices.finalize(sf, TENANT, f"inv-{i}", "ACME", "INV", AT).number)
    assert numbers == ["ACME-2026-000001", "ACME-2026-000002", "ACME-2026-000003"]
    assert numbering.last_number(sf, TENANT, "ACME", "INV", 2026) == 3


def test_the_year_of_the_issue_date_restarts_the_sequence(sf) -> None:
    draft(sf, "dec-a", issue_date=date(2026, 12, 31), due_date=date(2027, 1, 30))
    draft(sf, "jan-a", issue_date=date(2027, 1, 1), due_date=date(2027, 1, 31))
    draft(sf, "dec-b", issue_date=date(2026, 12, 31), due_date=date(2027, 1, 30))
    draft(sf, "jan-b", issue_date=date(2027, 1, 2), due_date=date(2027, 2, 1))
    got = [invoices.finalize(sf, TENANT, i, "ACME", "INV", AT).number for i in ("dec-a", "jan-a", "dec-b", "jan-b")]
    assert got == ["ACME-2026-000001", "ACME-2027-000001", "ACME-2026-000002", "ACME-2027-000002"]


def test_series_issuers_and_tenants_count_apart(sf) -> None:
    for i in range(5):
        draft(sf, f"x{i}")
    draft(sf, "other-tenant", tenant="globex-t")
    got = [
        invoices.finalize(sf, TENANT, "x0", "ACME", "INV", AT).number,
        invoices.finalize(sf, TENANT, "x1", "ACME", "B2B", AT).number,
        invoices.finalize(sf, TENANT, "x2", "ACME", "INV", AT).number,
        invoices.finalize(sf, TENANT, "x3", "ACMEUK", "INV", AT).number,
        invoices.finalize(sf, TENANT, "x4", "ACME", "B2B", AT).number,
        invoices.finalize(sf, "globex-t", "other-tenant", "ACME", "INV", AT).number,
    ]
    assert got == [
        "ACME-2026-000001",
        "ACME-B2B-2026-000001",
        "ACME-2026-000002",
        "ACMEUK-2026-000001",
        "ACME-B2B-2026-000002",
        "ACME-2026-000001",  # another tenant's own sequence
    ]


def test_finalizing_twice_returns_the_same_number(sf) -> None:
    draft(sf, "inv-1")
    first = invoices.finalize(sf, TENANT, "inv-1", "ACME", "INV", AT)
    again = invoices.finalize(sf, TENANT, "inv-1", "ACME", "INV", AT)
    assert first.number == again.number == "ACME-2026-000001"
    assert again.version == first.version  # nothing written
    assert numbering.last_number(sf, TENANT, "ACME", "INV", 2026) == 1


def test_a_rolled_back_finalization_consumes_no_number(sf) -> None:
    draft(sf, "inv-1")
    draft(sf, "inv-2")
    with sf() as s:  # the close's own transaction, failing after the number was given
        got = invoices.finalize_in(s, TENANT, "inv-1", "ACME", "INV", AT)
        assert got.number == "ACME-2026-000001"
        s.rollback()
    assert numbering.last_number(sf, TENANT, "ACME", "INV", 2026) == 0
    assert invoices.get(sf, TENANT, "inv-1").status == "draft"

    def broken_stamp(document: str, number: str) -> str:
        raise RuntimeError("the renderer failed")

    with pytest.raises(RuntimeError):
        invoices.finalize(sf, TENANT, "inv-2", "ACME", "INV", AT, stamp=broken_stamp)
    assert numbering.last_number(sf, TENANT, "ACME", "INV", 2026) == 0
    assert invoices.finalize(sf, TENANT, "inv-2", "ACME", "INV", AT).number == "ACME-2026-000001"
    assert invoices.finalize(sf, TENANT, "inv-1", "ACME", "INV", AT).number == "ACME-2026-000002"


def test_a_stamp_that_returns_no_json_is_refused_and_consumes_nothing(sf) -> None:
    draft(sf, "inv-1")
    with pytest.raises(Invalid) as exc:
        invoices.finalize(sf, TENANT, "inv-1", "ACME", "INV", AT, stamp=lambda doc, number: "<html>")
    assert exc.value.field == "document"
    assert numbering.last_number(sf, TENANT, "ACME", "INV", 2026) == 0


def test_issuer_and_series_are_codes(sf) -> None:
    draft(sf, "inv-1")
    for issuer, series, field in (("AC-ME", "INV", "issuer"), ("", "INV", "issuer"), ("ACME", "I/V", "series")):
        with pytest.raises(Invalid) as exc:
            invoices.finalize(sf, TENANT, "inv-1", issuer, series, AT)
        assert exc.value.field == field


def _run_threads(n: int, target) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except Exception as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return results


def test_ten_concurrent_finalizations_give_ten_numbers_without_gap(sf) -> None:
    for i in range(10):
        draft(sf, f"inv-{i}")
    results = _run_threads(10, lambda i: invoices.finalize(sf, TENANT, f"inv-{i}", "ACME", "INV", AT))
    assert [r for r in results if isinstance(r, Exception)] == []
    assert sorted(r.number for r in results) == [f"ACME-2026-{n:06d}" for n in range(1, 11)]
    assert numbering.last_number(sf, TENANT, "ACME", "INV", 2026) == 10
    for r in results:  # each stored document carries its own number
        assert json.loads(invoices.get(sf, TENANT, r.invoice_id).document)["number"] == r.number


def test_ten_concurrent_finalizations_of_one_invoice_give_one_number(sf) -> None:
    draft(sf, "inv-1")
    results = _run_threads(10, lambda i: invoices.finalize(sf, TENANT, "inv-1", "ACME", "INV", AT))
    assert [r for r in results if isinstance(r, Exception)] == []
    assert {r.number for r in results} == {"ACME-2026-000001"}
    assert numbering.last_number(sf, TENANT, "ACME", "INV", 2026) == 1
    with sf() as s:
        assert (
            s.scalar(
                select(func.count()).select_from(invoices.InvoiceRow).where(invoices.InvoiceRow.number.is_not(None))
            )
            == 1
        )


def test_a_voided_invoice_keeps_its_number_and_is_not_finalized_again(sf) -> None:
    draft(sf, "inv-1")
    invoices.finalize(sf, TENANT, "inv-1", "ACME", "INV", AT)
    invoices.void(sf, TENANT, "inv-1", "issued to the wrong customer")
    with pytest.raises(Conflict) as exc:
        invoices.finalize(sf, TENANT, "inv-1", "ACME", "INV", AT)
    assert exc.value.field == "status"
    draft(sf, "inv-2")
    assert invoices.finalize(sf, TENANT, "inv-2", "ACME", "INV", AT).number == "ACME-2026-000002"
