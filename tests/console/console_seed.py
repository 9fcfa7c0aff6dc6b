"""The console tests' hand-made rated usage (dates relative to today, UTC), shared by conftest.py and the tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day(n: int) -> str:
    """The date `n` days before today (UTC), YYYY-MM-DD."""
    return (TODAY - timedelta(days=n)).strftime("%Y-%m-%d")


def _rec(tenant: str, eid: str, customer: str, meter: str, when: datetime, quantity: str, amount: str,
         currency: str = "USD", subject: str = "") -> dict[str, Any]:  # fmt: skip
    t = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {
        "tenant": tenant, "id": eid, "customer": customer, "subject": subject, "meter": meter, "time": t,
        "period": t[:7], "quantity": quantity, "amount": amount, "cumulative": quantity, "currency": currency,
        "plan": "p", "line": meter, "dimensions": {}, "source": "", "src_partition": 0, "src_offset": 1,
    }  # fmt: skip


def _at(days_before: int, hour: int, minute: int = 0) -> datetime:
    return TODAY - timedelta(days=days_before) + timedelta(hours=hour, minutes=minute)


# acme c1: api_calls on 3 days ago (100 + 50, subjects u1 and u2) and yesterday (30, u1); storage today (u1).
# acme c1: minutes today on a volume-priced plan (up to 100 minutes 1.00 USD each, above 100 all at 0.45): u2 80 ->
# 80.00, then u3 40 -> cum 120 x 0.45 = 54.00, streamed as 54.00 - 80.00 = -26.00 (u3's streamed sum: negative).
# acme c2: two events today, 1.005 + 0.5 = 1.505 EUR, rounded half away from zero: 1.51 EUR.
# other: the same customer name c1 (7777 calls) and secret-co; none of it may show for acme.
ROWS = [
    _rec("acme", "e1", "c1", "api_calls", _at(3, 10), "100", "0.2", subject="u1"),
    _rec("acme", "e2", "c1", "api_calls", _at(3, 11), "50", "0.1", subject="u2"),
    _rec("acme", "e3", "c1", "api_calls", _at(1, 9), "30", "0.06", subject="u1"),
    _rec("acme", "e4", "c1", "storage_gb_hours", _at(0, 0), "1000", "0.137", subject="u1"),
    _rec("acme", "g1", "c1", "minutes", _at(0, 0, 2), "80", "80.00", subject="u2"),
    _rec("acme", "g2", "c1", "minutes", _at(0, 0, 3), "40", "-26.00", subject="u3"),
    _rec("acme", "f1", "c2", "api_calls", _at(0, 0), "3", "1.005", currency="EUR"),
    _rec("acme", "f2", "c2", "api_calls", _at(0, 0, 1), "2", "0.5", currency="EUR"),
    _rec("other", "o1", "c1", "api_calls", _at(1, 9), "7777", "9"),
    _rec("other", "o2", "secret-co", "api_calls", _at(1, 9), "1", "1"),
]
