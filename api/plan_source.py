"""The plan that prices a customer's meter, for the API's authorizations: the processor's rule, read from SQL.

`StorePlans.plan_for(tenant, customer, meter, at)` answers as the stream processor's `CatalogView` does (the
customer's subscriptions in effect at `at`, then the tenant's default subscription, then the file catalog
`settings.catalog`), with the entity documents read from the SQL store instead of the `entities` topic:
the customer's document, its and the tenant's default (`*`) subscriptions and the tenant's plan versions go
into an `EntityTable` kept `ttl` seconds per customer (a plan or subscription change is seen within `ttl`).
`customer(tenant, external_id)` is the stored customer document (None: unknown), from the same cache.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

import msgspec
from sqlalchemy import or_, select
from sqlalchemy.orm import sessionmaker

from meterstream.entities.customers import customer_doc, find_customer_row
from meterstream.entities.plans import PlanVersionRow, plan_doc
from meterstream.entities.subscriptions import SubscriptionRow
from meterstream.processor.live_catalog import DEFAULT_CUSTOMER, CatalogView, EntityTable
from meterstream.rating.catalog import Catalog, CatalogError, Plan, load_catalog
from meterstream.schemas.entities import CustomerDoc, SubscriptionDoc
from meterstream.schemas.settings import Settings

log = logging.getLogger(__name__)


class StorePlans:
    def __init__(self, settings: Settings, sf: sessionmaker, *, ttl: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.sf = sf
        self.ttl = ttl
        self.clock = clock
        self._catalog: Catalog | None = None
        self._catalog_path = settings.catalog
        self._catalog_loaded = False
        self._cache: dict[tuple[str, str], tuple[float, EntityTable, CustomerDoc | None]] = {}
        self._lock = threading.Lock()

    def catalog(self) -> Catalog | None:
        if not self._catalog_loaded:
            try:
                self._catalog = load_catalog(self._catalog_path)
            except CatalogError as exc:
                log.warning("authorizations: the file catalog is not usable (%s); stored plans only", exc)
            self._catalog_loaded = True
        return self._catalog

    def _load(self, tenant: str, external_id: str) -> tuple[EntityTable, CustomerDoc | None]:
        table = EntityTable()
        with self.sf() as s:
            row = find_customer_row(s, tenant, external_id)
            doc = customer_doc(row) if row is not None else None
            if doc is not None:
                table.apply(doc)
            whose = or_(SubscriptionRow.customer == external_id, SubscriptionRow.customer == DEFAULT_CUSTOMER)
            subs = s.scalars(select(SubscriptionRow.doc).where(SubscriptionRow.tenant == tenant, whose))
            for raw in subs:
                table.apply(msgspec.json.decode(raw, type=SubscriptionDoc))
            for version in s.scalars(select(PlanVersionRow).where(PlanVersionRow.tenant == tenant)):
                table.apply(plan_doc(version))
        return table, doc

    def _entry(self, tenant: str, customer: str) -> tuple[EntityTable, CustomerDoc | None]:
        now = self.clock()
        hit = self._cache.get((tenant, customer))
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1], hit[2]
        table, doc = self._load(tenant, customer)
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[(tenant, customer)] = (now, table, doc)
        return table, doc

    def customer(self, tenant: str, external_id: str) -> CustomerDoc | None:
        return self._entry(tenant, external_id)[1]

    def plan_for(self, tenant: str, customer: str, meter: str, at: datetime) -> Plan | None:
        table, _ = self._entry(tenant, customer)
        return CatalogView(table, self.catalog()).plan_for(tenant, customer, meter, at)
