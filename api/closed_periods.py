"""How far a customer is invoiced by the closes of whole periods, for the subscription writes of the API (/v1 and
Lago): the end, in the customer's time zone, of the newest month in ClickHouse `period_closes`.

The store refuses a start or change taking effect inside a finalized period (entities/finalization.py), but the
boundary it keeps is recorded per customer, and only for a customer the close invoiced through a subscription.
A customer without one at the close (created later, or billed nothing) had no boundary, so a subscription
created for it starting inside the closed month was accepted, and that month then came out of the next close as
late-usage adjustments of a month already closed. `period_closes` marks a month closed for every customer of
every tenant (invoice_emitter/closed.py), so the end of its newest month is a boundary for every customer: the
routes pass it to the store as `finalized_until` (the store keeps the later of the two).

The tenant's default subscription (`customer: "*"`) prices customers in every time zone: its boundary is the
month's end in the westernmost one (UTC-12), the last instant at which any customer's month ends.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from meterstream.api.queries import ClickHouseUnavailable
from meterstream.entities.common import NotFound
from meterstream.entities.customers import get_customer_doc
from meterstream.invoice_emitter.subscription_invoice import label_window

log = logging.getLogger(__name__)

DEFAULT_CUSTOMER = "*"
WESTERNMOST = "Etc/GMT+12"  # UTC-12 (the POSIX sign is inverted)


def newest_closed(state: Any) -> str | None:
    """The newest month label ("2026-11") closed for every customer, or None: none, or no ClickHouse configured
    (then no close can have marked one for this API to read), or ClickHouse not reachable: then the store's own
    boundary (`finalized_until`, per customer) is the only check, as before this rule, and a warning says so. A
    503 here refused every back-dated subscription (a migration's, a test's) whenever the ClickHouse front was not
    up, a worse failure than the rare late billing of a closed month this rule prevents."""
    queries = state.queries
    if not queries.configured():
        return None
    try:
        rows = queries.query(f"SELECT max(period) FROM {queries.db}.period_closes", {})
    except ClickHouseUnavailable as exc:
        log.warning("closed periods not read (ClickHouse: %s): a back-dated subscription write is checked against "
                    "the store's invoiced periods only", str(exc)[:200])  # fmt: skip
        return None
    label = rows[0][0] if rows else None
    return label or None  # max() of no rows is ""


def closed_until(state: Any, tenant: str, customer: str, when: datetime) -> datetime | None:
    """For a write taking effect at `when`: the end of the newest month closed for every customer, in `customer`'s
    time zone (UTC for a customer the store does not know: the write refuses it anyway), or None (module
    docstring). None without a read when `when` lies in the customer's current month or later: a month is closed
    once it has ended (`meterstream close` refuses an open one unless forced), so only a write dated before it can
    fall inside a closed month; a change taking effect this month does not depend on ClickHouse being up.
    Blocking: run off the event loop."""
    if customer == DEFAULT_CUSTOMER:
        zone = WESTERNMOST
    else:
        try:
            zone = get_customer_doc(state.sessions, tenant, customer).timezone or "UTC"
        except NotFound:
            zone = "UTC"
    now = datetime.now(UTC)
    if when >= label_window(f"{now.astimezone(ZoneInfo(zone)):%Y-%m}", zone)[0]:
        return None
    label = newest_closed(state)
    if label is None:
        return None
    return label_window(label, zone)[1]
