"""The Lago layer's wiring: repositories over the app's SQL sessions, the event service, the lookup, the replay.

`ingest` and `queries` are read from `app.state` at call time, so a test or an embedding app may swap
them after the app was built.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI

from meterstream.api.compat.lago.events import parse_lago_event
from meterstream.api.compat.lago.lookup import LagoLookup, kept_codes, kept_transaction
from meterstream.api.compat.lago.service import LagoEvents
from meterstream.api.compat.lago.translate import resolve_customer, translate_lago
from meterstream.api.ingest import IngestService
from meterstream.entities.lago_subscriptions import LagoSubscriptionRepository
from meterstream.entities.meters import MeterRepository
from meterstream.entities.unmatched import UnmatchedRepository
from meterstream.schemas.event import InvalidEvent


class LagoCompat:
    """What the routes need, over `app.state`."""

    def __init__(self, app: FastAPI) -> None:
        self.state = state = app.state
        self.meters = MeterRepository(state.sessions)
        self.subscriptions = LagoSubscriptionRepository(state.sessions)
        self.unmatched = UnmatchedRepository(state.sessions)

    @property
    def ingest(self) -> IngestService:
        return self.state.ingest

    @property
    def events(self) -> LagoEvents:
        return LagoEvents(
            self.ingest, self.meters.definitions, self.subscriptions.customers, self._keep, self._left_behind
        )

    @property
    def lookup(self) -> LagoLookup:
        return LagoLookup(self.state.queries, self.meters, self.state.sessions)

    def _keep(self, tenant: str, records: list[dict[str, Any]]) -> None:
        """Keep unmatched events, once per transaction id (a client retry does not keep a second copy)."""
        for r in records:
            if kept_transaction(self.state.sessions, tenant, r["event_id"]):
                continue
            self.unmatched.add(tenant, r["raw"], event_type=r["event_type"], source=r["source"],
                               event_id=r["event_id"], reason=r["reason"])  # fmt: skip

    def _left_behind(self, tenant: str, codes: set[str]) -> None:
        for code in sorted(kept_codes(self.state.sessions, tenant, codes)):
            self.replay(tenant, code)

    def replay(self, tenant: str, code: str) -> int:
        """Re-run the kept Lago events of `code` (after its billable metric was created)."""
        meters = self.meters.definitions(tenant, {code})
        owners: dict[str, dict[str, str]] = {}  # subscription -> {subscription: customer} when recorded

        def translate(raw: Any) -> list[dict[str, Any]]:
            try:
                event = parse_lago_event(raw, datetime.now(UTC))  # kept events carry their timestamp
                sub = event.external_subscription_id
                if sub is not None and sub not in owners:
                    owners[sub] = self.subscriptions.customers(tenant, {sub})
                customer = resolve_customer(event, owners.get(sub or "", {}))
            except InvalidEvent:
                return []  # not a Lago event (an OpenMeter one of the same type) or no longer valid
            return translate_lago(event, meters, customer).usage

        return self.unmatched.replay(tenant, code, translate, self.ingest.submit)
