"""Concurrent authorizations with holds (api/authorization.py + entities/holds.py `reserving`) on SQLite and on a
real PostgreSQL: eight workers, each with its own engine (its own connections, as separate API processes have),
start together and each asks to hold 100 `api_calls` of one customer. The holds together never exceed the
balance, and each later worker sees what the earlier ones hold.

Hand calculation (api_calls at 0.003 EUR, balance 1.00 EUR): 100 calls cost 0.30, so three workers get 100
(0.90 held), the fourth gets what 0.10 pays for, 33 calls (0.099; a 34th would make 0.102), and the other four
get 0 (0.001 left pays for no call). Held in all: 0.999.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from by_path import load

from meterstream.api.authorization import Balance, Context, Request, authorize
from meterstream.entities import holds
from meterstream.entities.db import make_engine, session_factory

setup = load("bench/authorize_setup.py")  # the plan and app of bench/authorize.py
example_plan = setup.example_plan

NOW = datetime(2026, 12, 1, 10, tzinfo=UTC)
WORKERS = 8


def context(sf) -> Context:  # type: ignore[no-untyped-def]
    plan = example_plan()
    return Context(customer_known=lambda t, c: True, plan_for=lambda t, c, m, at: plan,
                   balance=lambda t, c, cur: Balance(D("1.00"), "stream", None),
                   period_quantity=lambda t, c, m, at: None, sessions=sf)  # fmt: skip


def race(url: str, customer: str) -> list[D]:
    """WORKERS authorizations with a hold of one customer at once; the allowed quantities."""
    barrier = threading.Barrier(WORKERS)
    allowed: list[D] = []
    errors: list[BaseException] = []
    engines = [make_engine(url=url) for _ in range(WORKERS)]

    def worker(k: int) -> None:
        try:
            ctx = context(session_factory(engines[k]))
            req = Request(customer, "api_calls", {}, quantity=D(100), hold=True, session_id=f"s{k}")
            barrier.wait()
            allowed.append(authorize(ctx, "t1", req, now=NOW).allowed)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    assert errors == []
    return allowed


def test_concurrent_holds_never_exceed_the_balance(sf, db_url: str) -> None:  # type: ignore[no-untyped-def]
    for n in range(3):  # three customers, one race each
        customer = f"race-{n}"
        allowed = race(db_url, customer)
        assert sorted(allowed) == [0, 0, 0, 0, 33, 100, 100, 100]
        assert holds.held(sf, "t1", customer, "EUR", now=NOW) == D("0.999")  # 3 x 0.30 + 33 x 0.003


def test_the_lock_is_per_customer(sf, db_url: str) -> None:  # type: ignore[no-untyped-def]
    """A reservation of one customer left open does not hold up another customer's (PostgreSQL: the advisory lock
    is per customer; SQLite has one write lock for the file, so there the second would wait: not asserted)."""
    if sf.kw["bind"].dialect.name != "postgresql":
        pytest.skip("SQLite: one write lock per file")
    other = session_factory(make_engine(url=db_url))
    spec = holds.HoldSpec("t1", "c2", "api_calls", "EUR", D("0.5"), D(1), holds.MAX_TTL)
    with holds.reserving(sf, "t1", "c1") as r:
        assert r.held("EUR", now=NOW) == 0
        done = threading.Event()
        t = threading.Thread(target=lambda: (holds.place_hold(other, spec, now=NOW), done.set()))
        t.start()
        assert done.wait(10), "c2's hold waited for c1's lock"
        t.join()
    assert holds.held(sf, "t1", "c2", "EUR", now=NOW) == D("0.5")
    other.kw["bind"].dispose()


def test_a_reservation_rolls_back_on_error(sf) -> None:  # type: ignore[no-untyped-def]
    spec = holds.HoldSpec("t1", "c1", "api_calls", "EUR", D("0.5"), D(1), holds.MAX_TTL, "s1")
    try:
        with holds.reserving(sf, "t1", "c1") as r:
            r.place(spec, now=NOW)
            raise RuntimeError("the answer failed after the hold was written")
    except RuntimeError:
        pass
    assert holds.held(sf, "t1", "c1", "EUR", now=NOW) == 0  # nothing held: the hold went with the transaction
