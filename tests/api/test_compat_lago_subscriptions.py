"""Lago subscriptions (migration 0003 + repository) on SQLite: idempotent by external id, conflicts named."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from meterstream.entities.db import alembic_config, make_engine, migrate, session_factory
from meterstream.entities.lago_subscriptions import LagoSubscriptionRepository, SubscriptionConflict
from meterstream.schemas.settings import Settings


@pytest.fixture
def repo(tmp_path: Path) -> LagoSubscriptionRepository:
    settings = Settings(home=tmp_path)
    engine = make_engine(settings)
    migrate(settings, engine)
    return LagoSubscriptionRepository(session_factory(engine))


def test_create_is_idempotent_and_updates_plan_and_name(repo: LagoSubscriptionRepository) -> None:
    first, created = repo.create("t1", "sub-1", "acme", plan_code="basic")
    assert created is True
    again, created_again = repo.create("t1", "sub-1", "acme", plan_code="pro", name="Repo A")
    assert created_again is False
    assert again.lago_id == first.lago_id
    assert (again.plan_code, again.name) == ("pro", "Repo A")
    assert first.created_at.tzinfo is not None


def test_same_subscription_for_another_customer_is_a_conflict(repo: LagoSubscriptionRepository) -> None:
    repo.create("t1", "sub-1", "acme")
    with pytest.raises(SubscriptionConflict) as err:
        repo.create("t1", "sub-1", "globex")
    assert err.value.existing.external_customer_id == "acme"
    repo.create("t2", "sub-1", "globex")  # another tenant: its own namespace
    assert repo.customers("t1", ["sub-1"]) == {"sub-1": "acme"}
    assert repo.customers("t2", ["sub-1"]) == {"sub-1": "globex"}


def test_customers_lookup_in_bulk(repo: LagoSubscriptionRepository) -> None:
    for i in range(1, 1201):  # more than one IN list of 500
        repo.create("t1", f"sub-{i}", f"cust-{i % 7}")
    wanted = [f"sub-{i}" for i in range(1, 1301)]  # 100 of them are not recorded
    got = repo.customers("t1", wanted)
    assert len(got) == 1200
    assert got["sub-7"] == "cust-0" and got["sub-1200"] == "cust-3"  # 1200 = 7 * 171 + 3
    assert repo.customers("t1", []) == {}
    of_cust0 = [s.external_subscription_id for s in repo.list("t1", external_customer_id="cust-0")]
    assert of_cust0[:2] == ["sub-7", "sub-14"]


def test_migration_0003_up_and_down(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    engine = make_engine(settings)
    migrate(settings, engine)
    assert "lago_subscriptions" in inspect(engine).get_table_names()
    from alembic import command

    command.downgrade(alembic_config(str(engine.url)), "0002")
    assert "lago_subscriptions" not in inspect(engine).get_table_names()
    migrate(settings, engine)
    assert "lago_subscriptions" in inspect(engine).get_table_names()
