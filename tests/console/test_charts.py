"""console/charts.py: the bars of a daily chart, checked against hand-computed geometry (no browser)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from meterstream.console.charts import daily_bars, days

D = [date(2026, 11, 28), date(2026, 11, 29), date(2026, 11, 30), date(2026, 12, 1)]


def test_one_bar_per_day_with_usage_scaled_to_the_largest() -> None:
    # 4 slots over the plot width 640 - 56 - 8 = 576: 144 px each, 15 % gap (21.6) -> bars 122.4 wide, offset 10.8;
    # plot height 180 - 12 - 24 = 144 px: 10 -> 144 px (y = 156 - 144 = 12), 5 -> 72 px (y = 84).
    chart = daily_bars("api_calls", "quantity", {D[0]: Decimal("10"), D[2]: Decimal("5"), D[3]: Decimal("0")},
                       D[0], D[3])  # fmt: skip
    assert [(b.label, b.value, b.x, b.y, b.width, b.height) for b in chart.bars] == [
        ("2026-11-28", "10", "66.8", "12", "122.4", "144"),
        ("2026-11-30", "5", "354.8", "84", "122.4", "72"),
    ]
    assert (chart.total, chart.maximum, chart.first, chart.last) == ("15", "10", "2026-11-28", "2026-12-01")


def test_exact_values_and_a_tiny_bar_stays_visible() -> None:
    chart = daily_bars("u1", "USD", {D[0]: Decimal("0.000137"), D[1]: Decimal("1000.5")}, D[0], D[1])
    assert [b.value for b in chart.bars] == ["0.000137", "1000.5"]
    assert chart.total == "1000.500137"
    assert chart.bars[0].height == "1"  # 0.000137 / 1000.5 of 144 px is below a pixel: drawn 1 px high


def test_no_usage_no_bars_and_days_outside_the_range_are_refused() -> None:
    assert daily_bars("m", "quantity", {}, D[0], D[3]).bars == ()
    with pytest.raises(ValueError, match=r"2026-12-01 is outside 2026-11-28\.\.2026-11-30"):
        daily_bars("m", "quantity", {D[3]: Decimal(1)}, D[0], D[2])
    assert days(D[0], D[3]) == D


def test_a_customers_charts_keep_the_largest_subjects() -> None:
    from meterstream.console.customers import usage_charts

    def row(subject: str, meter: str, day: str, quantity: str, amount: str) -> dict:
        return {"window_start": f"{day}T00:00:00+00:00", "subject": subject, "meter": meter, "currency": "USD",
                "quantity": quantity, "amount": amount, "events": 1}  # fmt: skip

    rows = [row("ann", "calls", "2026-11-29", "10", "1"), row("bob", "calls", "2026-11-29", "5", "3"),
            row("bob", "sms", "2026-11-30", "2", "0.5"), row("cy", "calls", "2026-11-30", "1", "2")]  # fmt: skip
    meters, subjects, more = usage_charts(rows, D[0], D[3], max_subjects=2)
    assert [(c.title, c.total) for c in meters] == [("calls", "16"), ("sms", "2")]
    assert [(c.title, c.total) for c in subjects] == [("bob", "3.5"), ("cy", "2")]  # ann's 1 is the smallest
    assert more == 1
