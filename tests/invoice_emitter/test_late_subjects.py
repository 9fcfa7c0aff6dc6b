"""Issue #17 G1: late usage's adjustment line is shared among the subjects of the late usage (each subject's
quantity on the line now minus the quantity of its shares billed before; invoice_emitter/adjustments.py), by the
rule of every line (billing/allocation.py: cents by quantity, largest remainder). Figures by hand.

Plan `basic` of tests/data/catalog.yaml: api_calls graduated 0-10 free, 10-100 at 0.50, above 100 at 0.25 (USD).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.invoice_emitter.adjustments import Billed, BilledDetail, adjustment_lines, late_subjects
from meterstream.invoice_emitter.close import close_period
from meterstream.rating.catalog import load_catalog

CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")
D = Decimal


def insert(client, db: str, period: str, rows: list[tuple[str, str, str]]) -> None:  # type: ignore[no-untyped-def]
    """(subject, quantity, streamed amount) rows of customer c1's api_calls in `period`."""
    t = datetime(int(period[:4]), int(period[5:]), 15, tzinfo=UTC)
    client.insert(f"{db}.rated_usage", [
        ["t1", uuid.uuid4().hex, "c1", s, "api_calls", t, period, D(q), D(a), D(0), "USD", "basic", "api_calls", {},
         "", 0, 0] for s, q, a in rows], column_names=list(RATED_COLUMNS))  # fmt: skip


def test_late_usage_is_shared_among_the_late_subjects(chdb_client, db: str, tmp_path: Path) -> None:
    out = tmp_path / "inv"
    # September: u1 30, u2 20 = 50 -> (50 - 10) x 0.50 = 20.00, streamed 10 + 10
    insert(chdb_client, db, "2026-09", [("u1", "30", "10"), ("u2", "20", "10")])
    sep = close_period(chdb_client, db, CATALOG, "2026-09", out, progress=False)
    (line,) = sep.invoices[0]["lines"]
    # 2000 cents by 30 : 20 -> 1200, 800; the issued line carries what the stream rated (G4)
    assert [(s["subject"], s["amount"]) for s in line["subjects"]] == [("u1", "12.00"), ("u2", "8.00")]
    assert D(line["streamed_amount"]) == D(20)
    # late: u2 40, u3 20 -> 110: 90 x 0.50 + 10 x 0.25 = 47.50, +27.50 for 60 more
    insert(chdb_client, db, "2026-09", [("u2", "40", "20"), ("u3", "20", "7.5")])
    oct_ = close_period(chdb_client, db, CATALOG, "2026-10", out, progress=False)
    (adj,) = oct_.invoices[0]["lines"]
    assert (adj["kind"], adj["quantity"], adj["amount"]) == ("adjustment", "60", "27.50")
    # 2750 cents by 40 : 20 -> 1833.33, 916.67: floors 1833 + 916 = 2749, the cent left to u3 (.67)
    late = [("u2", "40", "18.33"), ("u3", "20", "9.17")]
    assert [(s["subject"], s["quantity"], s["amount"]) for s in adj["subjects"]] == late
    # what the stream rated for the late events, 20 + 7.5: the line's 47.5 now minus the 20 its September line said
    assert D(adj["streamed_amount"]) == D("27.5")


LINE = {"meter": "api_calls", "line_key": "api_calls", "description": "api calls", "quantity": "110",
        "amount": "47.50", "subject_quantities": {"": "10", "u1": "30", "u2": "70"}}  # fmt: skip


def test_late_subjects_only_when_they_account_for_the_adjustment() -> None:
    billed = BilledDetail({"": D(10), "u1": D(30), "u2": D(20)}, None)
    assert late_subjects(LINE, billed, D(50)) == {"u2": D(50)}
    # a billed line without a per-user section: its subjects are unknown, so are the late ones
    assert late_subjects(LINE, BilledDetail({}, None), D(50)) is None
    # a subject below what was billed to it cannot be late usage
    assert late_subjects(LINE, BilledDetail({"u1": D(40), "u2": D(20)}, None), D(50)) is None
    # no quantity (the amount moved): the line's subjects now, 0 each (shared equally by the issued invoice)
    moved = late_subjects(LINE, BilledDetail({"": D(10), "u1": D(30), "u2": D(70)}, None), D(0))
    assert moved == {"": D(0), "u1": D(0), "u2": D(0)}
    assert late_subjects({**LINE, "subject_quantities": {}}, None, D(5)) is None


def test_a_telecom_adjustment_gets_billed_units_only_when_the_billed_ones_are_known() -> None:
    line = {"meter": "voice_seconds", "line_key": "v/n/a", "description": "voice", "quantity": "336",
            "amount": "0.80", "precise_amount": "0.8", "billed_units": "480"}  # fmt: skip
    billed = {"v/n/a": ("voice_seconds", D(261), D("0.60"))}
    (adj,) = adjustment_lines([line], billed, "2026-10", "EUR", {"v/n/a": BilledDetail({}, D(360))})
    (step,) = adj["breakdown"]
    assert (adj["billed_units"], step["kind"], step["quantity"]) == ("120", "billed_units", "120")
    assert step["amount"] == "0.2"
    (adj,) = adjustment_lines([line], billed, "2026-10", "EUR", {"v/n/a": BilledDetail({}, None)})
    assert "billed_units" not in adj and "breakdown" not in adj
    (adj,) = adjustment_lines([line], billed, "2026-10", "EUR")  # billed, but nothing known beyond the ledger
    assert "billed_units" not in adj


def test_an_adjustment_streamed_amount_is_now_minus_billed_when_both_sides_say() -> None:
    now = {"meter": "api_calls", "line_key": "api_calls", "description": "api calls", "quantity": "110",
           "amount": "47.50", "precise_amount": "47.5", "streamed_amount": "47.4"}  # fmt: skip
    (adj,) = adjustment_lines([now], {"api_calls": Billed("api_calls", D(50), D("20.00"), D("19.9"))}, "2026-09", "USD")
    assert (adj["amount"], adj["streamed_amount"]) == ("27.50", "27.5")  # 47.50 - 20.00; 47.4 - 19.9
    # nothing billed before: all of it is late
    (adj,) = adjustment_lines([now], {}, "2026-09", "USD")
    assert adj["streamed_amount"] == "47.4"
    # a billed line that did not say what the stream rated (stored before the column, a fee): not known
    for billed in ({"api_calls": Billed("api_calls", D(50), D("20.00"), None)},
                   {"api_calls": ("api_calls", D(50), D("20.00"))}):  # fmt: skip
        (adj,) = adjustment_lines([now], billed, "2026-09", "USD")
        assert "streamed_amount" not in adj
    # the line now does not say: not known either
    (adj,) = adjustment_lines([{**now, "streamed_amount": None}], {}, "2026-09", "USD")
    assert "streamed_amount" not in adj
    # the usage is gone now (a credit): nothing streamed now, minus what was
    (gone,) = adjustment_lines([], {"api_calls": Billed("api_calls", D(50), D("20.00"), D("19.9"))}, "2026-09", "USD")
    assert (gone["amount"], gone["streamed_amount"]) == ("-20.00", "-19.9")
