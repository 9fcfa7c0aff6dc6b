"""Fixtures of the console tests: Debian's chromium driven by Playwright (no browser download), and the API app
with its console on a real uvicorn server, seeded with hand-made data: rated usage in the embedded ClickHouse,
customers and invoices in the SQL store, for tenant `acme` and for a second tenant `other`.

Without /usr/bin/chromium or the playwright package the browser tests skip, except in CI (.ci/run installs both),
where they fail."""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from served_app import serve

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_FIELDS
from meterstream.api.app import create_app
from meterstream.deploy.ports import free_port
from meterstream.entities.customers import put_customer
from meterstream.ingest.topics import ensure_topics
from meterstream.schemas.entities import CustomerDoc
from meterstream.schemas.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from console_seed import ROWS
from finance_helpers import store_invoice  # tests/api: a finalized v2 invoice, total 1324.07

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@dataclass
class Console:
    url: str
    settings: Settings
    app: Any

    def key(self, tenant: str = "acme", role: str = "read") -> str:
        return self.app.state.keys.create(tenant, role, "console test")[1]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    missing = [
        what
        for what, ok in (
            ("chromium", Path(CHROMIUM).exists()),
            ("playwright", importlib.util.find_spec("playwright") is not None),
        )
        if not ok
    ]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{' and '.join(missing)} missing in CI: .ci/run installs chromium (apt) and playwright (pip)")
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install chromium; pip install playwright)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def console(kafka_settings: Settings, chdb_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    db = f"console_{uuid.uuid4().hex[:8]}"
    settings = kafka_settings.model_copy(update={
        "home": tmp_path_factory.mktemp("console"), "topic_prefix": f"console-{uuid.uuid4().hex[:10]}.",
        "database_url": None, "clickhouse_http_port": 0, "clickhouse_database": db, "api_rate_limit_per_s": 0.0,
        "processor_metrics_port": free_port(), "sink_metrics_port": free_port(),
    })  # fmt: skip
    ensure_topics(settings)
    create_schema(chdb_client, db)
    chdb_client.raw_insert(f"{db}.rated_usage", RATED_FIELDS, b"\n".join(orjson.dumps(r) for r in ROWS),
                           fmt="JSONEachRow")  # fmt: skip
    app = create_app(settings, clickhouse_client=chdb_client, relay=False)
    sf = app.state.sessions
    put_customer(sf, CustomerDoc(tenant="acme", external_id="c1", name="Acme Robotics", version=0))
    put_customer(sf, CustomerDoc(tenant="other", external_id="secret-co", name="Secret Co", version=0))
    store_invoice(sf, "acme", "inv-acme-1", "c1")  # finalized: ACME-... number
    store_invoice(sf, "acme", "inv-acme-2", "c2", finalize=False)  # a draft
    store_invoice(sf, "other", "inv-other-1", "secret-co")
    with serve(app, timeout=30) as base:
        yield Console(base, settings, app)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def login(console: Console) -> Any:
    """login(page, key): submit the login form with `key`."""

    def _login(page: Any, key: str) -> None:
        page.goto(f"{console.url}/console/login")
        page.fill("#key", key)
        with page.expect_navigation():
            page.click("button[type=submit]")

    return _login
