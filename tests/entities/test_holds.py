"""Authorization holds in the entity store (entities/holds.py) on SQLite and PostgreSQL: what is held, the
session's records consuming and releasing it, expiry, and migration 0011 (matches the model; down to 0010 and
up again). Figures by hand in the comments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import inspect

from meterstream.entities import holds
from meterstream.entities.common import Conflict

NOW = datetime(2026, 12, 1, 10, tzinfo=UTC)


def spec(amount: str, session: str | None = None, minutes: int = 10, currency: str = "EUR") -> holds.HoldSpec:
    return holds.HoldSpec("t1", "c1", "voice_seconds", currency, D(amount), D(600), timedelta(minutes=minutes), session)


def test_held_consumed_released_expired(sf) -> None:  # type: ignore[no-untyped-def]
    holds.place_hold(sf, spec("0.70", "s1"), now=NOW)
    holds.place_hold(sf, spec("0.40", "s2", minutes=1), now=NOW)
    holds.place_hold(sf, spec("9", "s3", currency="USD"), now=NOW)
    assert holds.held(sf, "t1", "c1", "EUR", now=NOW) == D("1.10")  # 0.70 + 0.40
    assert holds.held(sf, "t1", "c1", "EUR", now=NOW, except_session="s1") == D("0.40")
    assert holds.held(sf, "t1", "c2", "EUR", now=NOW) == 0 and holds.held(sf, "t2", "c1", "EUR", now=NOW) == 0
    # s2 expires after 1 minute: 0.70 left; a record of s1 rated 0.22 -> 0.48
    later = NOW + timedelta(minutes=1)
    assert holds.held(sf, "t1", "c1", "EUR", now=later) == D("0.70")
    holds.consume(sf, "t1", "c1", "s1", D("0.22"), final=False, now=later)
    assert holds.held(sf, "t1", "c1", "EUR", now=later) == D("0.48")
    # more usage than held: the hold reserves 0, never less
    holds.consume(sf, "t1", "c1", "s1", D("0.50"), final=False, now=later)
    assert holds.held(sf, "t1", "c1", "EUR", now=later) == 0
    done = holds.consume(sf, "t1", "c1", "s1", D("0.01"), final=True, now=later)
    assert (done.status, done.consumed, done.remaining) == ("released", D("0.73"), 0)
    again = holds.consume(sf, "t1", "c1", "s1", D("0.01"), final=True, now=later)  # a replayed record: unchanged
    assert again.consumed == D("0.73")
    assert holds.consume(sf, "t1", "c1", "nope", D("1"), final=True) is None
    with pytest.raises(Conflict) as e:
        holds.place_hold(sf, spec("0.10", "s1"), now=later)
    assert e.value.field == "session_id"
    assert holds.expire(sf, now=later) == 1  # s2 (s3 runs until 10:10)
    assert holds.expire(sf, now=later) == 0


def test_the_migration_matches_the_model(engine) -> None:  # type: ignore[no-untyped-def]
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from meterstream.entities.db import Base

    assert "authorization_holds" in inspect(engine).get_table_names()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [x for x in diff if "authorization_holds" in repr(x)] == []


def test_down_to_0010_and_up_again(fresh_url: str) -> None:
    from alembic import command

    from meterstream.entities.db import alembic_config, make_engine, migrate, session_factory

    engine = make_engine(url=fresh_url)
    migrate(engine=engine)
    sf = session_factory(engine)
    holds.place_hold(sf, spec("1", "s1"), now=NOW)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0010")
    names = set(inspect(engine).get_table_names())
    assert "authorization_holds" not in names and "dunning_policies" in names
    migrate(engine=engine)
    holds.place_hold(sf, spec("1", "s1"), now=NOW)
    assert holds.held(sf, "t1", "c1", "EUR", now=NOW) == D("1")
    engine.dispose()


def test_rated_records_name_their_session_by_field_or_dimensions(sf) -> None:  # type: ignore[no-untyped-def]
    holds.place_hold(sf, spec("0.70", "s1"), now=NOW)
    holds.place_hold(sf, spec("0.40", "s2"), now=NOW)
    base = {"tenant": "t1", "customer": "c1", "amount": "0.10", "dimensions": {}}
    records = [
        {**base, "session": {"id": "s1", "sequence": 1}},  # 0.70 - 0.10 = 0.60
        {**base, "dimensions": {"session_id": "s2"}},  # 0.40 - 0.10 = 0.30
        {**base, "session": {"id": "s2", "final": True}},  # released
        base,  # no session: nothing
    ]
    assert holds.consume_rated(sf, records) == 3
    assert holds.held(sf, "t1", "c1", "EUR", now=NOW) == D("0.60")
    assert holds.session_of({"dimensions": {"session_id": "x", "final": "TRUE"}}) == ("x", True)
    assert holds.session_of({"dimensions": {}}) == (None, False)
