"""Period close on embedded ClickHouse: final invoices, re-issue, and late usage as adjustments.

Prices from tests/data/catalog.yaml, plan `basic`: api_calls graduated 0-10 free, 10-100 at 0.50,
above 100 at 0.25 (USD). Expected amounts are worked by hand in the comments.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.invoice_emitter.close import close_period
from meterstream.rating.catalog import load_catalog, parse_catalog

CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")


def insert(client, db: str, customer: str, period: str, *quantities: str) -> None:
    rows = []
    for q in quantities:
        eid = uuid.uuid4().hex
        t = datetime(int(period[:4]), int(period[5:]), 15, tzinfo=UTC)
        rows.append(["t1", eid, customer, "", "api_calls", t, period, Decimal(q), Decimal(0), Decimal(0), "USD",
                     "basic", "api_calls", {}, "", 0, 0])  # fmt: skip
    client.insert(f"{db}.rated_usage", rows, column_names=list(RATED_COLUMNS))


def totals(result) -> dict[str, Decimal]:
    return {d["customer"]: Decimal(d["total"]) for d in result.invoices}


def test_late_usage_is_billed_on_the_next_close(chdb_client, db: str, tmp_path: Path) -> None:
    out = tmp_path / "inv"
    insert(chdb_client, db, "c1", "2026-09", "30", "20")
    sep = close_period(chdb_client, db, CATALOG, "2026-09", out, progress=False)
    assert totals(sep) == {"c1": Decimal("20.00")}  # 40 * 0.50
    sep_file = (out / "2026-09" / "t1" / "c1.json").read_bytes()

    insert(chdb_client, db, "c1", "2026-09", "60")  # late: September is closed
    insert(chdb_client, db, "c2", "2026-09", "20")  # late, for a customer September never billed
    insert(chdb_client, db, "c1", "2026-10", "5")
    oct_ = close_period(chdb_client, db, CATALOG, "2026-10", out, progress=False)
    # c1 September now 110: 90*0.50 + 10*0.25 = 47.50, billed 20.00 -> +27.50; October 5 units: 0.00
    # c2 September 20: 10 * 0.50 = 5.00, nothing billed -> +5.00
    assert totals(oct_) == {"c1": Decimal("27.50"), "c2": Decimal("5.00")}
    adj = [line for line in oct_.invoices[0]["lines"] if line.get("kind") == "adjustment"]
    assert [(a["applies_to"], a["quantity"], a["amount"]) for a in adj] == [("2026-09", "60", "27.50")]
    for doc in oct_.invoices:
        assert sum(Decimal(line["amount"]) for line in doc["lines"]) == Decimal(doc["total"])

    # September stays final: closing it again re-issues the same documents, files unchanged
    again = close_period(chdb_client, db, CATALOG, "2026-09", out, progress=False)
    assert again.reissued and totals(again) == {"c1": Decimal("20.00")}
    assert (out / "2026-09" / "t1" / "c1.json").read_bytes() == sep_file
    assert close_period(chdb_client, db, CATALOG, "2026-10", out, progress=False).invoices == oct_.invoices

    # nothing late since: November charges no second adjustment
    nov = close_period(chdb_client, db, CATALOG, "2026-11", out, progress=False)
    assert nov.invoices == []


def test_a_second_late_batch_is_charged_only_for_itself(chdb_client, db: str, tmp_path: Path) -> None:
    out = tmp_path / "inv"
    insert(chdb_client, db, "c1", "2026-09", "100")  # 90 * 0.50 = 45.00
    close_period(chdb_client, db, CATALOG, "2026-09", out, progress=False)
    insert(chdb_client, db, "c1", "2026-09", "10")  # 110 -> 47.50: +2.50
    assert totals(close_period(chdb_client, db, CATALOG, "2026-10", out, progress=False)) == {"c1": Decimal("2.50")}
    insert(chdb_client, db, "c1", "2026-09", "40")  # 150 -> 45 + 50*0.25 = 57.50: +10.00 on top of 47.50
    assert totals(close_period(chdb_client, db, CATALOG, "2026-11", out, progress=False)) == {"c1": Decimal("10.00")}


def test_a_customer_id_that_cannot_be_a_file_name_fails_alone(chdb_client, db: str, tmp_path: Path) -> None:
    """Issue #15: one bad customer id never blocks the others; it is reported with the reason, never numbered."""
    insert(chdb_client, db, "c1", "2026-09", "30")
    insert(chdb_client, db, "../c2", "2026-09", "30")
    result = close_period(chdb_client, db, CATALOG, "2026-09", tmp_path / "inv", progress=False)
    assert [d["customer"] for d in result.invoices] == ["c1"]
    assert [(t, c) for t, c, _ in result.failed] == [("t1", "../c2")]
    assert "cannot name a file" in result.failed[0][2]
    assert result.invoices[0]["number"] == "DEMO-2026-000001"  # the bad one used no number
    assert sorted(p.name for p in (tmp_path / "inv").iterdir() if p.is_dir()) == ["2026-09"]
    assert not (tmp_path / "c2.json").exists() and not (tmp_path / "inv" / "c2.json").exists()


def insert_bulk(client, db: str, tenant: str, customer: str, period: str, *quantities: str) -> None:
    """Usage of plan `bulk` (EUR, volume: up to 100 units 0.10 each, above 100 0.05 each for all, +5.00 flat)."""
    t = datetime(int(period[:4]), int(period[5:]), 15, tzinfo=UTC)
    rows = [[tenant, uuid.uuid4().hex, customer, "", "api_calls", t, period, Decimal(q), Decimal(0), Decimal(0), "EUR",
             "bulk", "api_calls", {}, "", 0, 0] for q in quantities]  # fmt: skip
    client.insert(f"{db}.rated_usage", rows, column_names=list(RATED_COLUMNS))


def lines_of(doc) -> list[tuple[str, str]]:
    return [(line.get("applies_to") or doc["period"], line["amount"]) for line in doc["lines"]]


def test_a_late_usage_credit_larger_than_the_invoice_waits_and_the_rest_is_invoiced(
    chdb_client, db: str, tmp_path: Path
) -> None:
    """A volume price makes a period cheaper when late usage arrives: a credit. An invoice is never negative, so a
    credit that does not fit waits for a later invoice; the customer's other charges are invoiced meanwhile (the
    customer used to fail at every close, its October usage not invoiced either)."""
    out = tmp_path / "inv"
    for period in ("2026-08", "2026-09"):
        insert_bulk(chdb_client, db, "t2", "x", period, "100")  # 100 * 0.10 + 5 = 15.00
        assert totals(close_period(chdb_client, db, CATALOG, period, out, progress=False)) == {"x": Decimal("15.00")}
    insert_bulk(chdb_client, db, "t2", "x", "2026-08", "1")  # late: 101 * 0.05 + 5 = 10.05, credit -4.95
    insert_bulk(chdb_client, db, "t2", "x", "2026-09", "1")  # the same for September: -4.95
    insert_bulk(chdb_client, db, "t2", "x", "2026-10", "10")  # 10 * 0.10 + 5 = 6.00

    oct_ = close_period(chdb_client, db, CATALOG, "2026-10", out, progress=False)
    # 6.00 - 4.95 - 4.95 < 0: August's credit fits whole (6.00 - 4.95 = 1.05), September's for 1.05 of its 4.95
    assert oct_.failed == []
    assert totals(oct_) == {"x": Decimal("0.00")}
    assert lines_of(oct_.invoices[0]) == [("2026-10", "6.00"), ("2026-08", "-4.95"), ("2026-09", "-1.05")]
    assert [line["quantity"] for line in oct_.invoices[0]["lines"]] == ["10", "1", "0"]  # a part: no quantity

    insert_bulk(chdb_client, db, "t2", "x", "2026-11", "100")  # 15.00
    nov = close_period(chdb_client, db, CATALOG, "2026-11", out, progress=False)
    assert totals(nov) == {"x": Decimal("11.10")}  # 15.00 - (4.95 - 1.05): the rest of September's credit
    assert lines_of(nov.invoices[0]) == [("2026-11", "15.00"), ("2026-09", "-3.90")]
    assert nov.invoices[0]["lines"][1]["quantity"] == "1"  # the credit's last part carries the late unit
    for doc in (*oct_.invoices, *nov.invoices):
        assert sum(Decimal(line["amount"]) for line in doc["lines"]) == Decimal(doc["total"])
    assert close_period(chdb_client, db, CATALOG, "2026-12", out, progress=False).invoices == []


def test_a_late_usage_credit_alone_makes_no_invoice_and_no_failure(chdb_client, db: str, tmp_path: Path) -> None:
    out = tmp_path / "inv"
    insert_bulk(chdb_client, db, "t1", "big", "2026-09", "100")  # t1/big is on `bulk`: 15.00
    close_period(chdb_client, db, CATALOG, "2026-09", out, progress=False)
    insert_bulk(chdb_client, db, "t1", "big", "2026-09", "1")  # -4.95
    oct_ = close_period(chdb_client, db, CATALOG, "2026-10", out, progress=False)
    assert (oct_.invoices, oct_.failed) == ([], [])  # was: failed, "total: never negative (got -4.95)"
    insert_bulk(chdb_client, db, "t1", "big", "2026-11", "100")
    nov = close_period(chdb_client, db, CATALOG, "2026-11", out, progress=False)
    assert totals(nov) == {"big": Decimal("10.05")}


def test_a_large_late_usage_credit_goes_on_the_next_invoices_until_it_is_used(chdb_client, db: str, tmp_path):
    """Volume price 1.00 a unit up to 100 units, 0.10 a unit for all above: 100 units bill 100.00, 101 units 10.10, so
    one late unit credits 89.90, more than a month's usage. Each invoice takes as much of it as brings it to 0."""
    catalog = parse_catalog({
        "version": 1,
        "plans": [{"id": "cliff", "currency": "EUR", "meters": {"api_calls": {"model": "volume", "tiers": [
            {"up_to": "100", "unit_amount": "1.00"}, {"up_to": None, "unit_amount": "0.10"}]}}}],
        "assignments": [{"tenant": "t3", "customer": "*", "plan": "cliff"}],
    })  # fmt: skip
    out = tmp_path / "inv"

    def usage(period: str, quantity: str) -> None:
        t = datetime(int(period[:4]), int(period[5:]), 15, tzinfo=UTC)
        row = ["t3", uuid.uuid4().hex, "c", "", "api_calls", t, period, Decimal(quantity), Decimal(0), Decimal(0),
               "EUR", "cliff", "api_calls", {}, "", 0, 0]  # fmt: skip
        chdb_client.insert(f"{db}.rated_usage", [row], column_names=list(RATED_COLUMNS))

    def close(period: str) -> list[tuple[str, str, str]]:
        result = close_period(chdb_client, db, catalog, period, out, progress=False)
        assert result.failed == []
        return [(line.get("applies_to") or period, line["quantity"], line["amount"])
                for doc in result.invoices for line in doc["lines"]]  # fmt: skip

    usage("2026-09", "100")
    assert close("2026-09") == [("2026-09", "100", "100.00")]
    usage("2026-09", "1")  # late: 101 * 0.10 = 10.10, credit 89.90
    usage("2026-10", "10")  # 10.00
    assert close("2026-10") == [("2026-10", "10", "10.00"), ("2026-09", "0", "-10.00")]  # total 0.00
    usage("2026-11", "50")  # 50.00
    assert close("2026-11") == [("2026-11", "50", "50.00"), ("2026-09", "0", "-50.00")]  # 79.90 was left
    usage("2026-12", "100")  # 100.00
    assert close("2026-12") == [("2026-12", "100", "100.00"), ("2026-09", "1", "-29.90")]  # total 70.10
    assert close("2027-01") == []  # used up: 10.00 + 50.00 + 29.90 = 89.90
