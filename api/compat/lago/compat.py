"""The Lago layer's wiring: repositories over the app's SQL sessions, the event service, the lookup, the replay.

`ingest` and `queries` are read from `app.state` at call time, so a test or an embedding app may swap
them after the app was built.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI

from meterstream.api.closed_periods import closed_until
from meterstream.api.compat.lago.events import parse_lago_event
from meterstream.api.compat.lago.lookup import LagoLookup, kept_codes, kept_transaction
from meterstream.api.compat.lago.metrics import FROM_AGGREGATION
from meterstream.api.compat.lago.service import LagoEvents
from meterstream.api.compat.lago.subscriptions import LagoSubscriptions
from meterstream.api.compat.lago.translate import resolve_customer, translate_lago
from meterstream.api.ingest import IngestService
from meterstream.entities import lago_event_errors
from meterstream.entities.common import NotFound
from meterstream.entities.customers import CustomerRepository
from meterstream.entities.lago_subscriptions import LagoSubscriptionRepository
from meterstream.entities.meters import Meter, MeterRepository
from meterstream.entities.priceable import file_catalog_prices
from meterstream.entities.unmatched import UnmatchedRepository
from meterstream.schemas.event import InvalidEvent


class LagoCompat:
    """What the routes need, over `app.state`."""

    def __init__(self, app: FastAPI) -> None:
        self.state = state = app.state
        # a billable metric is held to the usage-price rule against the file catalog too (entities/priceable.py)
        self.meters = MeterRepository(
            state.sessions, file_prices=lambda t: file_catalog_prices(getattr(state.settings, "catalog", None), t)
        )
        self.subscriptions = LagoSubscriptionRepository(state.sessions)
        self.unmatched = UnmatchedRepository(state.sessions)
        self.customers = CustomerRepository(state.sessions)
        self.lago_subscriptions = LagoSubscriptions(
            state.sessions,
            self.subscriptions,
            lambda tenant, customer, when: closed_until(state, tenant, customer, when),
        )
        self._draft_usage: Callable[..., dict[str, Any]] | None = None

    @property
    def draft_usage(self) -> Callable[..., dict[str, Any]]:
        """The close's draft invoice of a subscription's current period (invoice_emitter); replaceable."""
        if self._draft_usage is None:
            from meterstream.invoice_emitter.subscription_invoice import draft_usage

            return draft_usage
        return self._draft_usage

    @draft_usage.setter
    def draft_usage(self, fn: Callable[..., dict[str, Any]] | None) -> None:
        self._draft_usage = fn

    def _meter(self, tenant: str, ref: str) -> Meter | None:
        try:
            return self.meters.get(tenant, ref)
        except NotFound:
            return None

    def metric(self, tenant: str) -> Callable[[str], tuple[str, str] | None]:
        """Billable metric lago_id (or code) -> (meter, aggregation_type) of the tenant's metrics."""

        def lookup(ref: str) -> tuple[str, str] | None:
            meter = self._meter(tenant, ref)
            if meter is None:
                return None
            return meter.slug, FROM_AGGREGATION.get(meter.aggregation.upper(), meter.aggregation.lower())

        return lookup

    def metric_info(self, tenant: str) -> Callable[[str], tuple[str, str, str] | None]:
        """Meter -> (metric lago_id, name, aggregation_type) of the tenant's billable metric feeding it."""

        def lookup(meter_slug: str) -> tuple[str, str, str] | None:
            meter = self._meter(tenant, meter_slug)
            if meter is None:
                return None
            kind = FROM_AGGREGATION.get(meter.aggregation.upper(), meter.aggregation.lower())
            return meter.id, meter.name or meter.slug, kind

        return lookup

    @property
    def ingest(self) -> IngestService:
        return self.state.ingest

    @property
    def events(self) -> LagoEvents:
        return LagoEvents(
            self.ingest, self.meters.definitions, self.subscriptions.customers, self._keep, self._left_behind,
            lambda tenant, errors: lago_event_errors.record(self.state.sessions, tenant, errors),
        )  # fmt: skip

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
