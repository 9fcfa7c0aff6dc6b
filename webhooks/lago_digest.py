"""Lago's `events.errors` webhook (docs/lago.md "Webhooks"): the dispatcher, once an hour, turns the Lago event
errors not yet reported (entities/lago_event_errors.py) into one `events.errors` lifecycle event per tenant, listing
the transaction ids by error (`invalid_code`, `missing_aggregation_property`; `invalid_filter_values` is always
empty: Meterstream has no charge filters; `missing_group_key` is null, as Lago now sends it).

The errors are marked reported in the transaction that appends the event, so each is reported once; a tenant
with no endpoint that wants the type (every Lago-format endpoint that names none or names it; a standard endpoint
only by naming it: it is opt-in there) has its errors marked reported without an event, so an endpoint added
later does not get old errors.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from meterstream.entities.lago_event_errors import (
    INVALID_CODE,
    MISSING_AGGREGATION_PROPERTY,
    LagoEventErrorRow,
    take_unreported,
)
from meterstream.entities.numbering import lock_for_write
from meterstream.webhooks.endpoints import WebhookEndpointRow, to_endpoint
from meterstream.webhooks.events import EVENTS_ERRORS, append

LIMIT = 10_000  # errors per digest (the rest wait for the next one)


def digest_once(sf: sessionmaker, now: datetime, limit: int = LIMIT) -> int:
    """Report the errors not yet reported; returns how many `events.errors` events were appended."""
    with sf() as s:  # an idle digest only reads
        if s.scalar(select(LagoEventErrorRow.id).where(LagoEventErrorRow.reported_at.is_(None)).limit(1)) is None:
            return 0
    with sf.begin() as s:
        lock_for_write(s)
        taken = take_unreported(s, now, limit)
        rows = s.scalars(select(WebhookEndpointRow).where(WebhookEndpointRow.tenant.in_(sorted(taken)),
                                                         WebhookEndpointRow.enabled.is_(True)))  # fmt: skip
        wanting = {ep.tenant for ep in map(to_endpoint, rows) if ep.wants(EVENTS_ERRORS)}
        made = 0
        for tenant, kinds in taken.items():
            if tenant not in wanting:
                continue
            data = {"object": "events_errors", "tenant": tenant, "invalid_code": kinds[INVALID_CODE],
                    "missing_aggregation_property": kinds[MISSING_AGGREGATION_PROPERTY], "invalid_filter_values": [],
                    "missing_group_key": None}  # fmt: skip
            append(s, tenant, EVENTS_ERRORS, EVENTS_ERRORS, f"{tenant}/{EVENTS_ERRORS}", data)
            made += 1
        return made


__all__ = ["LIMIT", "digest_once"]
