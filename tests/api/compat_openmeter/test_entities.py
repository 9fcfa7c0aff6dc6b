"""Meter definitions, subjects and customers on SQLite after the migrations (the API's start-up path)."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from meterstream.entities.common import Conflict, NotFound
from meterstream.entities.customers import CustomerCreate, CustomerRepository
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.entities.meters import MeterRepository
from meterstream.entities.subjects import SubjectRepository, SubjectUpsert
from meterstream.ingest.translate import MeterDefinition
from meterstream.schemas.event import InvalidEvent


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(url=f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine=engine)
    yield session_factory(engine)
    engine.dispose()


def test_migrated_tables_match_the_models(sessions):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from meterstream.entities import entitlements, portal_tokens  # noqa: F401  (their models join Base.metadata)
    from meterstream.entities.db import Base

    engine = sessions.kw["bind"]
    names = {
        "meter_definitions",
        "subjects",
        "customers",
        "customer_subjects",
        "features",
        "entitlements",
        "entitlement_grants",
        "entitlement_resets",
        "portal_tokens",
    }
    assert names <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    mine = [d for d in diff if any(n in repr(d) for n in names)]
    assert mine == []


TOKENS = MeterDefinition("tokens", "prompt", "SUM", "$.tokens", {"model": "$.model"})


def test_meters_create_get_list_delete(sessions):
    repo = MeterRepository(sessions)
    m = repo.create("t1", TOKENS, name="Tokens", description="LLM tokens")
    assert len(m.id) == 26 and m.slug == "tokens" and m.group_by == {"model": "$.model"}
    assert repo.get("t1", "tokens").id == m.id
    assert repo.get("t1", m.id).slug == "tokens"
    with pytest.raises(NotFound):
        repo.get("t2", "tokens")  # another tenant's meter is invisible
    with pytest.raises(Conflict) as exc:
        repo.create("t1", TOKENS)
    assert exc.value.field == "slug"
    repo.create("t2", TOKENS)  # the same slug in another tenant is fine
    assert [d.slug for d in repo.definitions("t1", {"prompt"})] == ["tokens"]
    assert repo.definitions("t1", {"other"}) == []
    repo.delete("t1", "tokens")
    with pytest.raises(NotFound):
        repo.get("t1", "tokens")
    assert repo.list("t1") == [] and len(repo.list("t1", include_deleted=True)) == 1
    again = repo.create("t1", TOKENS)  # a deleted meter frees its slug
    assert again.id != m.id


def test_meter_create_refuses_a_bad_definition(sessions):
    with pytest.raises(InvalidEvent) as exc:
        MeterRepository(sessions).create("t1", MeterDefinition("tokens", "prompt", "SUM", None))
    assert exc.value.field == "valueProperty"


def test_subjects_upsert_replaces_by_key(sessions):
    repo = SubjectRepository(sessions)
    (a,) = repo.upsert("t1", [SubjectUpsert("user-1", display_name="One", metadata={"x": 1})])
    (b,) = repo.upsert("t1", [SubjectUpsert("user-1", display_name="Uno")])
    assert a.id == b.id and b.display_name == "Uno" and b.metadata is None
    repo.upsert("t1", [SubjectUpsert("user-2")])
    assert [s.key for s in repo.list("t1")] == ["user-1", "user-2"]
    assert repo.get("t1", a.id).key == "user-1"
    assert repo.list("t2") == []


def test_customers_and_usage_attribution(sessions):
    repo = CustomerRepository(sessions)
    acme = repo.create("t1", CustomerCreate(name="ACME", key="acme", subject_keys=("u1", "u2"), currency="usd"))
    anon = repo.create("t1", CustomerCreate(name="No key", subject_keys=("u3",)))
    assert acme.currency == "USD" and acme.subject_keys == ("u1", "u2")
    assert repo.get("t1", "acme").id == acme.id and repo.get("t1", acme.id).key == "acme"
    assert repo.subject_customers("t1", ["u1", "u3", "u9"]) == {"u1": "acme", "u3": anon.id}
    assert repo.subject_customers("t2", ["u1"]) == {}
    with pytest.raises(Conflict) as exc:
        repo.create("t1", CustomerCreate(name="Other", subject_keys=("u2",)))
    assert exc.value.field == "usageAttribution.subjectKeys"
    with pytest.raises(Conflict):
        repo.create("t1", CustomerCreate(name="Dup", key="acme"))
    page, total = repo.list("t1", page=1, page_size=1)
    assert total == 2 and [c.key for c in page] == ["acme"]
    page, total = repo.list("t1", page=2, page_size=1)
    assert [c.id for c in page] == [anon.id]
    assert [c.id for c in repo.list("t1", subject="u3")[0]] == [anon.id]
    assert set(repo.by_meterstream_ids("t1", ["acme", anon.id, "nobody"])) == {"acme", anon.id}
    with pytest.raises(ValueError, match="currency"):
        repo.create("t1", CustomerCreate(name="X", currency="dollars"))
