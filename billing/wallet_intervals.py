"""When an interval top-up rule of a wallet is due (docs/wallets.md, "Automatic top-ups"). Pure.

Lago's `recurring_transaction_rules` with trigger `interval` top a wallet up on the anniversaries of the rule's
`started_at` (else of the wallet's creation), in the customer's time zone: every week on the same weekday, every
month on the same day of the month, every 3 / 6 / 12 months on that day of the anchor's month and the months 3 / 6
apart. A day the month does not have is its last day (an anchor on the 31st falls on 30 April, 28 or 29 February);
yearly, 29 February falls on 28 February in other years. Each anniversary counts from the anchor itself, never
from the previous one, so 31 January, 28 February, 31 March (not 28 March).
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta

__all__ = ["INTERVALS", "anniversaries"]

# months between two anniversaries (weekly: 0, counted in days)
_MONTHS = {"weekly": 0, "monthly": 1, "quarterly": 3, "semiannual": 6, "yearly": 12}
INTERVALS = tuple(_MONTHS)
_MAX = 10_000  # anniversaries looked at in one call at most (a century of weeks is 5,218)


def _nth(anchor: date, months: int, k: int) -> date:
    """The k-th anniversary of `anchor` every `months` months: the anchor's day, or the month's last day."""
    index = anchor.month - 1 + months * k
    year, month = anchor.year + index // 12, index % 12 + 1
    return date(year, month, min(anchor.day, calendar.monthrange(year, month)[1]))


def anniversaries(anchor: date, interval: str, first: date, last: date) -> list[date]:
    """The anniversaries of `anchor` (the anchor itself included) every `interval` that lie in [first, last],
    in order. ValueError for an interval not in INTERVALS."""
    if interval not in _MONTHS:
        raise ValueError(f"interval: one of {', '.join(INTERVALS)} (got {interval!r})")
    months = _MONTHS[interval]
    if months == 0:
        start = max(0, (first - anchor).days // 7)  # the first week that can lie in the range

        def nth(k: int) -> date:
            return anchor + timedelta(weeks=k)
    else:
        start = max(0, ((first.year - anchor.year) * 12 + first.month - anchor.month) // months - 1)

        def nth(k: int) -> date:
            return _nth(anchor, months, k)

    out: list[date] = []
    for k in range(start, start + _MAX):
        day = nth(k)
        if day > last:
            break
        if day >= first:
            out.append(day)
    return out
