"""api/plan_source.py StorePlans: the authorizations' plans and customers from the entity outbox. On SQLite it reads
the outbox through the DB-API connection; that read must give exactly the rows of entities/outbox.py `read_outbox`,
and changes are seen as before: an unknown customer at once, others after `refresh` seconds."""

from __future__ import annotations

from pathlib import Path

from by_path import load

from meterstream.api.plan_source import StorePlans
from meterstream.entities.customers import put_customer
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.entities.outbox import read_outbox
from meterstream.schemas.entities import CustomerDoc

setup = load("bench/authorize_setup.py")  # the plan and app of bench/authorize.py
example_settings = setup.example_settings


def doc(customer: str, name: str, version: int = 0) -> CustomerDoc:
    return CustomerDoc(tenant="t1", external_id=customer, name=name, version=version, currency="EUR")


def test_store_plans_reads_the_outbox_as_read_outbox_does(tmp_path: Path) -> None:
    settings = example_settings(tmp_path)
    engine = make_engine(url=f"sqlite:///{tmp_path / 's.db'}")
    migrate(engine=engine)
    sf = session_factory(engine)
    now = [0.0]
    plans = StorePlans(settings, sf, refresh=0.5, clock=lambda: now[0])
    for i in range(3):
        put_customer(sf, doc(f"c{i}", f"C{i}"))
    assert plans._read(0) == read_outbox(sf, 0, 5000) and len(plans._read(0)) == 3
    assert plans._read(2) == read_outbox(sf, 2, 5000) and [r[0] for r in plans._read(2)] == [3]
    assert plans._read(3) == []
    assert plans.customer("t1", "c1").name == "C1"  # type: ignore[union-attr]
    assert plans.plan_for("t1", "c1", "api_calls", None).id == "prepaid"  # type: ignore[union-attr]  # the file catalog
    put_customer(sf, doc("c9", "C9"))  # unknown until now: read at once
    assert plans.customer("t1", "c9").name == "C9"  # type: ignore[union-attr]
    put_customer(sf, doc("c1", "renamed", version=1))
    assert plans.customer("t1", "c1").name == "C1"  # type: ignore[union-attr]  # known: read again after refresh
    now[0] += 0.5
    assert plans.customer("t1", "c1").name == "renamed"  # type: ignore[union-attr]
    assert plans.customer("t1", "nobody") is None
    engine.dispose()
