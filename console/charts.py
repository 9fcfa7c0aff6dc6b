"""Bar charts as geometry for server-side SVG: pure, so the bars are tested without a browser.

A chart has one slot per day of its range (left to right) and a bar only in the slots with usage, its height in
proportion to the largest value. Values are exact decimals (quantities or amounts as the query path returns them);
only the drawing coordinates are derived from them, as text with one decimal of a pixel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal

from meterstream.rating.money import EXACT

_PX = Context(prec=28, rounding=ROUND_HALF_EVEN)  # drawing coordinates only: never money
WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 12, 24


@dataclass(frozen=True)
class Bar:
    label: str  # the day, YYYY-MM-DD
    value: str  # the exact value, as text
    x: str
    y: str
    width: str
    height: str


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    total: str
    maximum: str
    first: str  # first and last day of the range (axis labels)
    last: str
    bars: tuple[Bar, ...]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: int = HEIGHT - BOTTOM
    top: int = TOP


def days(first: date, last: date) -> list[date]:
    """Every day from `first` to `last`, both included."""
    if last < first:
        raise ValueError("last: before first")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _text(value: Decimal) -> str:
    """Exact decimal text without trailing zeros."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _px(value: Decimal) -> str:
    return _text(_PX.quantize(value, Decimal("0.1")))


def daily_bars(title: str, unit: str, values: Mapping[date, Decimal], first: date, last: date) -> Chart:
    """One slot per day from `first` to `last`; a bar for each day with a non-zero value (days outside the range are
    refused: the caller asked for that range)."""
    slots = days(first, last)
    index = {d: i for i, d in enumerate(slots)}
    outside = sorted(d for d in values if d not in index)
    if outside:
        raise ValueError(f"values: {outside[0].isoformat()} is outside {first.isoformat()}..{last.isoformat()}")
    plotted = {d: v for d, v in values.items() if v != 0}
    top = max((abs(v) for v in plotted.values()), default=Decimal(0))
    slot = _PX.divide(Decimal(WIDTH - LEFT - RIGHT), Decimal(len(slots)))
    gap = _PX.multiply(slot, Decimal("0.15"))
    room = Decimal(HEIGHT - TOP - BOTTOM)
    bars = []
    for d in sorted(plotted):
        v = plotted[d]
        h = _PX.divide(_PX.multiply(abs(v), room), top)
        h = max(h, Decimal(1))  # a tiny value stays visible
        bars.append(Bar(
            label=d.isoformat(), value=_text(v), x=_px(_PX.add(Decimal(LEFT), _PX.multiply(slot, index[d]) + gap / 2)),
            y=_px(Decimal(HEIGHT - BOTTOM) - h), width=_px(slot - gap), height=_px(h),
        ))  # fmt: skip
    total = Decimal(0)
    for v in values.values():
        total = EXACT.add(total, v)
    return Chart(title=title, unit=unit, total=_text(total), maximum=_text(top), first=first.isoformat(),
                 last=last.isoformat(), bars=tuple(bars))  # fmt: skip
