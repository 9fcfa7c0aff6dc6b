"""The dunning run's open suspensions (entities/dunning.open_suspensions), on SQLite and PostgreSQL: only the
suspensions not lifted leave the database, read through indexes (migration 0013), and a customer suspended,
reactivated and suspended again for a later invoice is reactivated again for that invoice alone.

By hand (policy: one reminder 3 days after the due date, then suspend the day after it): an invoice due
2026-10-15 is reminded on 10-18 and suspended for on 10-19; paid on 10-20, reactivated that day. The next one,
due 2026-11-15, is reminded on 11-18 and suspended for on 11-19; paid on 11-20, reactivated for it alone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event

from meterstream.billing.dunning import Policy
from meterstream.entities.customers import put_customer
from meterstream.entities.dunning import customer_state, open_suspensions, put_policy, record_step
from meterstream.entities.invoices import finalize, mark_overdue, upsert_draft
from meterstream.entities.payments import record_payment
from meterstream.invoice_emitter.dunning_run import run_dunning
from meterstream.schemas.entities import CustomerDoc

T = "acme"
SUSPENDING = Policy((3,), suspend_after_last=True)


def _invoice(sf, invoice_id: str, due: date) -> None:  # type: ignore[no-untyped-def]
    upsert_draft(sf, tenant=T, invoice_id=invoice_id, customer="c1", period=f"{due.year}-{due.month - 1:02d}",
                 currency="EUR", total="100.00", issue_date=due - timedelta(days=14), due_date=due,
                 document=b'{"lines": []}')  # fmt: skip
    finalize(sf, T, invoice_id, "ACME", "INV", datetime(due.year, due.month, 1, tzinfo=UTC))


def _steps(sf, first: date, last: date) -> list[tuple[date, str, str]]:  # type: ignore[no-untyped-def]
    out = []
    day = first
    while day <= last:
        mark_overdue(sf, day)
        out += [(day, s["step"], s["invoice"]) for s in run_dunning(sf, day, None).steps]
        day += timedelta(days=1)
    return out


def test_suspended_reactivated_and_suspended_again(sf) -> None:  # type: ignore[no-untyped-def]
    put_customer(sf, CustomerDoc(tenant=T, external_id="c1", name="c1", version=0, currency="EUR",
                                 payment_terms_days=14))  # fmt: skip
    put_policy(sf, T, None, SUSPENDING)
    _invoice(sf, "inv-sep", date(2026, 10, 15))
    assert _steps(sf, date(2026, 10, 16), date(2026, 10, 19)) == [
        (date(2026, 10, 18), "reminder:1", "inv-sep"), (date(2026, 10, 19), "suspend", "inv-sep")]  # fmt: skip
    with sf() as s:
        assert open_suspensions(s) == {(T, "c1"): ["inv-sep"]}
    record_payment(sf, T, amount="100.00", currency="EUR", paid_on=date(2026, 10, 20), reference="p1",
                   invoice_id="inv-sep")  # fmt: skip
    assert _steps(sf, date(2026, 10, 20), date(2026, 10, 21)) == [(date(2026, 10, 20), "reactivate", "inv-sep")]
    with sf() as s:
        assert open_suspensions(s) == {}
    assert customer_state(sf, T, "c1").suspended_for == []

    _invoice(sf, "inv-oct", date(2026, 11, 15))
    assert _steps(sf, date(2026, 11, 16), date(2026, 11, 19)) == [
        (date(2026, 11, 18), "reminder:1", "inv-oct"), (date(2026, 11, 19), "suspend", "inv-oct")]  # fmt: skip
    with sf() as s:
        assert open_suspensions(s) == {(T, "c1"): ["inv-oct"]}  # the lifted one is not read again
    assert customer_state(sf, T, "c1").suspended_for == ["inv-oct"]
    record_payment(sf, T, amount="100.00", currency="EUR", paid_on=date(2026, 11, 20), reference="p2",
                   invoice_id="inv-oct")  # fmt: skip
    assert _steps(sf, date(2026, 11, 20), date(2026, 11, 20)) == [(date(2026, 11, 20), "reactivate", "inv-oct")]
    assert customer_state(sf, T, "c1").suspended_for == []


def _log(sf, history: int) -> None:  # type: ignore[no-untyped-def]
    """`history` invoices of c1 suspended and reactivated, c1 suspended for inv-open, c2 for two, and other's c1."""
    day = date(2026, 10, 1)
    with sf.begin() as s:
        for i in range(history):
            record_step(s, T, f"old-{i}", "c1", "reminder:1", day)
            record_step(s, T, f"old-{i}", "c1", "suspend", day)
            record_step(s, T, f"old-{i}", "c1", "reactivate", day)
        record_step(s, T, "inv-open", "c1", "suspend", day)
        record_step(s, T, "inv-open", "c1", "reminder:1", day)
        record_step(s, T, "inv-2b", "c2", "suspend", day)
        record_step(s, T, "inv-2a", "c2", "suspend", day)
        record_step(s, "other", "inv-x", "c1", "suspend", day)
        record_step(s, "other", "inv-y", "c1", "reactivate", day)  # another invoice's: lifts nothing


def test_only_the_open_suspensions_leave_the_database(sf) -> None:  # type: ignore[no-untyped-def]
    _log(sf, history=300)
    rows: list[int] = []
    statements: list[str] = []

    def fetched(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    engine = sf.kw["bind"]
    event.listen(engine, "after_cursor_execute", fetched)
    try:
        with sf() as s:
            found = open_suspensions(s)
            rows.append(sum(len(v) for v in found.values()))
    finally:
        event.remove(engine, "after_cursor_execute", fetched)
    assert found == {(T, "c1"): ["inv-open"], (T, "c2"): ["inv-2a", "inv-2b"], ("other", "c1"): ["inv-x"]}
    assert rows == [4] and len([q for q in statements if "dunning_log" in q]) == 1  # one query, 4 of 903 suspends
    with sf() as s:
        assert open_suspensions(s, T) == {(T, "c1"): ["inv-open"], (T, "c2"): ["inv-2a", "inv-2b"]}
        assert open_suspensions(s, T, "c2") == {(T, "c2"): ["inv-2a", "inv-2b"]}
        assert open_suspensions(s, "other", "c2") == {}
        with pytest.raises(ValueError, match="customer: needs its tenant"):
            open_suspensions(s, customer="c1")


def _plan(sf, statement: str, parameters: object) -> str:  # type: ignore[no-untyped-def]
    """The database's plan of the statement as the driver ran it (its own parameter style)."""
    engine = sf.kw["bind"]
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return "\n".join(r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
        conn.exec_driver_sql("ANALYZE dunning_log")
        conn.exec_driver_sql("SET enable_seqscan = off")  # a small table: ask whether an index CAN serve it
        return "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))


def test_the_query_is_served_by_indexes(sf) -> None:  # type: ignore[no-untyped-def]
    _log(sf, history=50)
    captured: list[tuple[str, object]] = []
    engine = sf.kw["bind"]

    def keep(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        captured.append((statement, parameters))

    for args in ((), (T,), (T, "c2")):
        captured.clear()
        event.listen(engine, "before_cursor_execute", keep)
        try:
            with sf() as s:
                open_suspensions(s, *args)
        finally:
            event.remove(engine, "before_cursor_execute", keep)
        ((statement, parameters),) = [(q, p) for q, p in captured if "dunning_log" in q]
        plan = _plan(sf, statement, parameters)
        if engine.dialect.name == "sqlite":  # its planner is rule-based: the plan names the indexes
            assert "ix_dunning_log_step_tenant_customer" in plan, plan
            assert "SCAN dunning_log" not in plan, plan  # every read of the log is a SEARCH through an index
            assert "sqlite_autoindex_dunning_log_1" in plan, plan  # the unique key answers the NOT EXISTS
        else:  # the planner picks among the indexes by statistics; none of its choices reads the whole table
            assert "Seq Scan" not in plan, plan
