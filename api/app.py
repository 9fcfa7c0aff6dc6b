"""create_app(settings) -> the FastAPI application: own API v1, health, and the compat layers.

Compat layers plug in by convention: a module `meterstream.api.compat.<name>.routes` that defines
`mount(app)` (preferred: it includes its routers and may call `errors.register_error_format`), or a
`router` (an APIRouter carrying its own prefix, e.g. /compat/openmeter), is mounted when present.
Everything a route needs is on `app.state`: settings, engine, sessions, keys, rate_limiter, ingest
(the one IngestService), queries (the one query path).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from meterstream.api.errors import install_error_handlers
from meterstream.api.ingest import IngestService
from meterstream.api.metrics import MetricsMiddleware
from meterstream.api.queries import UsageQueries
from meterstream.api.ratelimit import TokenBuckets
from meterstream.api.relay_flush import RelayFlushMiddleware
from meterstream.api.routes import add_ons as add_on_routes
from meterstream.api.routes import authorize as authorize_routes
from meterstream.api.routes import billing, coupons, customers, events, health, invoices, plans, subscriptions, usage
from meterstream.api.routes import wallets as wallet_routes
from meterstream.console import mount as mount_console
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.entities.keys import KeyRepository
from meterstream.schemas.settings import Settings, get_settings

log = logging.getLogger(__name__)
COMPAT = ("openmeter", "lago")


def _mount_compat(app: FastAPI) -> list[str]:
    mounted = []
    for name in COMPAT:
        module_name = f"meterstream.api.compat.{name}.routes"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        if hasattr(module, "mount"):
            module.mount(app)
        elif hasattr(module, "router"):
            app.include_router(module.router)
        else:
            continue
        mounted.append(name)
    return mounted


def create_app(
    settings: Settings | None = None,
    *,
    ingest: IngestService | None = None,
    queries: UsageQueries | None = None,
    engine: Engine | None = None,
    clickhouse_client: Any = None,
    relay: bool | None = None,
) -> FastAPI:
    """The application. Runs the SQL migrations first (a fresh machine needs no manual step).

    `relay`: run the entity outbox relay (entities/relay.py) in this process while the app runs; default:
    when the app owns its Kafka producer (no `ingest` given), as `meterstream serve` and `up` do."""
    settings = settings or get_settings()
    engine = engine or make_engine(settings)
    migrate(settings, engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if (ingest is None) if relay is None else relay:
            from meterstream.entities.relay import start_relay

            app.state.relay = start_relay(settings, app.state.sessions)
            from meterstream.webhooks.dispatcher import start_dispatcher  # lifecycle events: webhooks + Kafka

            app.state.webhooks = start_dispatcher(settings, app.state.sessions, renderers=app.state.webhook_renderers)
            from meterstream.webhooks.notifications_relay import start_notifications_relay  # alerts -> webhooks

            app.state.notifications = start_notifications_relay(settings, app.state.sessions)
            from meterstream.api.routes.authorize import start_feed  # balances in memory for /v1/authorize

            app.state.balance_reader = start_feed(app)
        yield
        if app.state.balance_reader is not None:
            app.state.balance_reader.stop()
        if app.state.notifications is not None:
            app.state.notifications.stop()
        if app.state.webhooks is not None:
            app.state.webhooks.stop()
        if app.state.relay is not None:
            app.state.relay.stop()
        if ingest is None:  # ours: flush and stop the producer
            app.state.ingest.close()

    app = FastAPI(
        title="Meterstream API",
        version="1",
        description="Usage ingest and real-time usage reads. Authenticate with `Authorization: Bearer <API key>` "
        '(`meterstream keys create`). Errors: `{"error": {"code", "message", "field"?}}`.',
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.relay = None  # the entity outbox relay, started by the lifespan
    app.state.webhooks = None  # the webhook dispatcher (webhooks/dispatcher.py), started with the relay
    app.state.webhook_renderers = {}  # payloads of other endpoint formats than the standard one (Lago's: its mount)
    app.state.notifications = None  # notifications topic -> webhook events (webhooks/notifications_relay.py)
    app.state.balance_reader = None  # the balances topic reader (api/balance_feed.py), started with the relay
    app.state.keys = KeyRepository(app.state.sessions)
    app.state.rate_limiter = TokenBuckets(settings.api_rate_limit_per_s, settings.api_rate_limit_burst)
    app.state.ingest = ingest or IngestService(settings)
    app.state.queries = queries or UsageQueries(settings, clickhouse_client)
    install_error_handlers(app)
    app.add_middleware(RelayFlushMiddleware)  # entity writes answered only once on the entities topic
    app.add_middleware(MetricsMiddleware)
    app.include_router(health.router)
    # POST /v1/authorize and its holds (docs/authorization.md), first: FastAPI tries the routes in order, and
    # an authorization (p99 <= 5 ms) matched after every other router spent ~0.4 ms of CPU on the tries
    app.include_router(authorize_routes.router)
    app.include_router(events.make_router(settings))
    app.include_router(usage.router)
    for entity_routes in (customers, plans, subscriptions):
        app.include_router(entity_routes.router)
    app.include_router(invoices.router)  # invoices, payments, credit notes, exports
    app.include_router(billing.router)  # POST /v1/billing/close (operator)
    app.include_router(coupons.router)  # coupons and applied coupons (docs/coupons.md)
    app.include_router(add_on_routes.router)  # add-ons, billed on one-off invoices (docs/add-ons.md)
    from meterstream.api.routes import dunning as dunning_routes

    app.include_router(dunning_routes.router)  # dunning policies, customers' dunning (docs/dunning.md)
    app.include_router(wallet_routes.router)  # prepaid wallets and their balances (docs/wallets.md)
    from meterstream.api.routes import analytics as analytics_routes

    app.include_router(analytics_routes.router)  # monthly finance figures (docs/analytics.md)
    app.state.compat = _mount_compat(app)
    mount_console(app)  # the web console under /console (console/)
    return app
