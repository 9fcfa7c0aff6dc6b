"""Drafts kept current (invoice_emitter/drafts.py): open labels, refreshes of what changed, the close finalizing
the same record.

Prices from tests/data/catalog.yaml, plan `basic`: api_calls graduated 0-10 free, 10-100 at 0.50 (USD). By hand:
30 calls = 10.00, 40 calls = 15.00, 90 calls = 40.00, 20 calls = 5.00.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.entities import invoices
from meterstream.invoice_emitter.close import close_period
from meterstream.invoice_emitter.drafts import DraftState, open_labels, refresh_drafts
from meterstream.invoice_emitter.store_plans import StoreView
from meterstream.rating.catalog import load_catalog

CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_open_labels_run_from_after_the_last_closed_one_to_the_current_month() -> None:
    now = utc(2026, 12, 5)
    assert open_labels(["2026-09", "2026-10"], ["2026-08"], now) == ["2026-11", "2026-12"]
    assert open_labels([], ["2026-11", "2026-10"], now) == ["2026-10", "2026-11", "2026-12"]
    assert open_labels([], [], now) == ["2026-12"]
    assert open_labels(["2026-11"], [], utc(2027, 1, 1)) == ["2026-12", "2027-01"]
    assert open_labels(["2026-12"], [], now) == []  # a forced close of the current month: nothing open


def insert(client, db: str, customer: str, day: datetime, quantity: str) -> None:  # type: ignore[no-untyped-def]
    row = ["t1", uuid.uuid4().hex, customer, "", "api_calls", day, f"{day:%Y-%m}", Decimal(quantity), Decimal(0),
           Decimal(0), "USD", "basic", "api_calls", {}, "", 0, 0]  # fmt: skip
    client.insert(f"{db}.rated_usage", [row], column_names=list(RATED_COLUMNS))


@pytest.fixture
def env(chdb_client, tmp_path: Path):  # type: ignore[no-untyped-def]
    from meterstream.entities.db import make_engine, migrate, session_factory

    db = f"d_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    engine = make_engine(url=f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine=engine)
    return db, StoreView(session_factory(engine))


def drafts_of(store: StoreView) -> dict[str, tuple[Decimal, int]]:
    return {r.customer: (r.total, r.version) for r in invoices.list_invoices(store.sf, "t1", status="draft")}


def test_a_refresh_recomputes_only_customers_with_new_usage_and_the_close_finalizes_the_drafts(
    chdb_client, env, tmp_path: Path
) -> None:
    from meterstream.entities.customers import put_customer
    from meterstream.schemas.entities import CustomerDoc

    db, store = env
    now = utc(2026, 11, 20)
    insert(chdb_client, db, "c1", utc(2026, 11, 2), "30")
    insert(chdb_client, db, "c2", utc(2026, 11, 3), "20")

    first, state = refresh_drafts(chdb_client, db, CATALOG, store, now)
    assert (first.labels, first.full, first.customers, first.drafts) == (["2026-11"], True, None, 2)
    assert drafts_of(store) == {"c1": (Decimal("10.00"), 1), "c2": (Decimal("5.00"), 1)}

    idle, state = refresh_drafts(chdb_client, db, CATALOG, store, now, state)
    assert (idle.full, idle.customers, idle.drafts) == (False, 0, 0)

    insert(chdb_client, db, "c1", utc(2026, 11, 19), "10")  # 40 calls
    # the state survives a restart through its file
    state.save(tmp_path / "state.json")
    state = DraftState.load(tmp_path / "state.json")
    assert state is not None
    more, state = refresh_drafts(chdb_client, db, CATALOG, store, now, state)
    assert (more.full, more.customers, more.drafts) == (False, 1, 1)
    assert drafts_of(store) == {"c1": (Decimal("15.00"), 2), "c2": (Decimal("5.00"), 1)}  # c2 not rewritten

    put_customer(store.sf, CustomerDoc(tenant="t1", external_id="c2", name="C2", version=0))  # an entity write
    again, state = refresh_drafts(chdb_client, db, CATALOG, store, now, state)
    assert (again.full, again.drafts) == (True, 2)

    # November closes; the drafts become the finalized invoices (same records); late usage of November lands
    # on December's draft as an adjustment once December is the open label
    closed = close_period(chdb_client, db, CATALOG, "2026-11", tmp_path / "inv", progress=False, store=store)
    assert sorted(d["total"] for d in closed.invoices) == ["15.00", "5.00"]
    assert drafts_of(store) == {}
    assert {r.customer: r.status for r in invoices.list_invoices(store.sf, "t1")} == {
        "c1": "finalized",
        "c2": "finalized",
    }
    insert(chdb_client, db, "c1", utc(2026, 11, 29), "50")  # late: 90 calls = 40.00, +25.00
    dec, state = refresh_drafts(chdb_client, db, CATALOG, store, utc(2026, 12, 2), state)
    assert (dec.labels, dec.full, dec.drafts) == (["2026-12"], True, 1)
    [draft] = invoices.list_invoices(store.sf, "t1", status="draft")
    assert (draft.customer, draft.period, draft.total) == ("c1", "2026-12", Decimal("25.00"))
