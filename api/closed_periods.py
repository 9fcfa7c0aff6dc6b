"""How far a customer is invoiced by the closes of whole periods, for the subscription writes of the API (/v1 and
Lago): the newest month in ClickHouse `period_closes`, read here, and its end in the customer's time zone
(`entities.finalization.closed_month_end`, which `meterstream catalog apply` uses too), passed to the store as
`finalized_until`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from meterstream.api.queries import ClickHouseUnavailable
from meterstream.entities.finalization import closed_month_end
from meterstream.invoice_emitter.ledger import newest_closed_sql

log = logging.getLogger(__name__)


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
        rows = queries.query(newest_closed_sql(queries.db), {})
    except ClickHouseUnavailable as exc:
        log.warning("closed periods not read (ClickHouse: %s): a back-dated subscription write is checked against "
                    "the store's invoiced periods only", str(exc)[:200])  # fmt: skip
        return None
    label = rows[0][0] if rows else None
    return label or None  # max() of no rows is ""


def closed_until(state: Any, tenant: str, customer: str, when: datetime) -> datetime | None:
    """For a write taking effect at `when`: the end of the newest month closed for every customer, in `customer`'s
    time zone, or None (`entities.finalization.closed_month_end`; ClickHouse is read only for a write dated before
    the customer's current month, so a change taking effect this month does not depend on it being up).
    Blocking: run off the event loop."""
    return closed_month_end(state.sessions, tenant, customer, when, lambda: newest_closed(state))
