"""What the close reads from the entity store: subscriptions, customers' billing time zones and plan versions.

Read-only (the one write, the finalization mark, goes through `entities.finalization`). Plan versions are
immutable, so a version is read once per close and kept; a deleted version still prices the phases that used
it (deleting a plan only stops new use, like the live catalog). `StoreView.open(settings)` opens the store,
creating the default SQLite file under the data directory when there is none yet: the store is the home of
the invoice records (`records.py`), so a fresh machine's close creates it (a store without subscriptions
bills from the catalog file alone).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from meterstream.billing.plans import PlanLookup
from meterstream.rating.catalog import CatalogError, Plan, build_plan
from meterstream.schemas.entities import CustomerDoc, PlanVersionDoc, SubscriptionDoc
from meterstream.schemas.settings import Settings

__all__ = ["StoreView"]


class StoreView:
    """The entity store as the close asks it (one instance per close: plan versions are cached)."""

    def __init__(self, sf: sessionmaker) -> None:
        self.sf = sf
        self._versions: dict[tuple[str, str], dict[int, PlanVersionDoc]] = {}
        self._rating: dict[tuple[str, str, int, bytes], Plan] = {}
        self._timezones: dict[tuple[str, str], str] = {}
        self._customers: dict[tuple[str, str], CustomerDoc] | None = None

    @classmethod
    def open(cls, settings: Settings) -> StoreView:
        """The store named by the settings, created (default SQLite under the data directory) and migrated
        when needed: safe to repeat."""
        from meterstream.entities.db import make_engine, migrate, session_factory

        engine = make_engine(settings)
        migrate(engine=engine)
        return cls(session_factory(engine))

    # --- subscriptions and customers --------------------------------------------------------------------

    def subscriptions(self) -> dict[tuple[str, str], list[SubscriptionDoc]]:
        """Every subscription that is not deleted, per (tenant, customer), by external id. A tenant's default
        subscription (customer `*`) is listed under `*` (the close does not invoice it; see docs/billing.md)."""
        from meterstream.entities.subscriptions import SubscriptionRow

        out: dict[tuple[str, str], list[SubscriptionDoc]] = {}
        with self.sf() as s:
            for raw in s.scalars(select(SubscriptionRow.doc)):
                doc = msgspec.json.decode(raw, type=SubscriptionDoc)
                if not doc.deleted:
                    out.setdefault((doc.tenant, doc.customer), []).append(doc)
        return {k: sorted(v, key=lambda d: d.external_id) for k, v in sorted(out.items())}

    def customer_subscriptions(self, tenant: str, customer: str) -> list[SubscriptionDoc]:
        from meterstream.entities.subscriptions import list_subscriptions

        subs = [d for d in list_subscriptions(self.sf, tenant, customer) if not d.deleted]
        return sorted(subs, key=lambda d: d.external_id)

    def customers(self) -> dict[tuple[str, str], CustomerDoc]:
        """Every customer that is not deleted, per (tenant, external id): their billing details, read once."""
        from meterstream.entities.customers import CustomerRow, customer_doc

        if self._customers is None:
            with self.sf() as s:
                rows = s.scalars(select(CustomerRow).where(CustomerRow.deleted_at.is_(None)))
                docs = [customer_doc(row) for row in rows]
            self._customers = {(d.tenant, d.external_id): d for d in docs}
        return self._customers

    def timezone(self, tenant: str, customer: str) -> str:
        """The customer's billing time zone (UTC when the store has no such customer)."""
        key = (tenant, customer)
        if key not in self._timezones:
            from meterstream.entities.customers import find_customer_row

            with self.sf() as s:
                row = find_customer_row(s, tenant, customer)
                if row is None:
                    self._timezones[key] = "UTC"
                else:
                    from meterstream.entities.customers import customer_doc

                    self._timezones[key] = customer_doc(row).timezone
        return self._timezones[key]

    # --- plan versions ----------------------------------------------------------------------------------

    def versions(self, tenant: str, code: str) -> dict[int, PlanVersionDoc]:
        """Every version of plan `code`, deleted ones included (they still price the phases that used them)."""
        key = (tenant, code)
        found = self._versions.get(key)
        if found is None:
            from meterstream.entities.plans import PlanVersionRow, plan_doc

            stmt = select(PlanVersionRow).where(PlanVersionRow.tenant == tenant, PlanVersionRow.code == code)
            with self.sf() as s:
                found = {row.version: plan_doc(row) for row in s.scalars(stmt)}
            self._versions[key] = found
        return found

    def lookup(self, tenant: str) -> PlanLookup:
        """The billing domain's lookup for one tenant: version N of a plan, or (N None) the newest version
        published at or before `as_of`, else the first (as `billing.plans.lookup_from`). KeyError names it."""

        def lookup(code: str, version: int | None, as_of: datetime) -> PlanVersionDoc:
            versions = self.versions(tenant, code)
            if version is not None:
                if version not in versions:
                    raise KeyError(f"plan {code}@{version} not found")
                return versions[version]
            if not versions:
                raise KeyError(f"plan {code} not found")
            published = [v for v, d in versions.items() if d.published_at is None or d.published_at <= as_of]
            return versions[max(published) if published else min(versions)]

        return lookup

    def rating_plan(self, doc: PlanVersionDoc, overrides: dict[str, dict[str, Any]] | None = None) -> Plan:
        """The plan version as the pricing engine's Plan (id `code@version`), with a subscription's usage
        overrides: the same construction as the processor's live catalog. ValueError names what is wrong."""
        overrides = overrides or {}
        key = (doc.tenant, doc.code, doc.version, msgspec.json.encode(overrides, order="sorted"))
        plan = self._rating.get(key)
        if plan is None and not doc.usage and not overrides and doc.telecom is None:
            plan = self._rating[key] = Plan(doc.rating_id, doc.currency, {}, name=doc.name)  # fees only
        if plan is None:
            try:
                plan = build_plan(
                    doc.rating_id, doc.currency, {**doc.usage, **overrides}, doc.telecom, name=doc.name,
                    where=f"plan {doc.tenant}/{doc.rating_id}", meters_field="usage",
                )  # fmt: skip
            except CatalogError as exc:
                raise ValueError(str(exc)) from None
            self._rating[key] = plan
        return plan
