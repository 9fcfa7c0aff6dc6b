"""`subject_shares_open` (aggregation/views.py): each subject's fair share of its customer's running amount per
meter, currency and billing period, in SQL, by the rule of `billing.allocation.subject_shares`.

Known data, worked by hand below; then random pools against `subject_shares` itself (hypothesis, chdb).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterstream.aggregation.ddl import create_schema
from meterstream.billing.allocation import subject_shares
from meterstream.invoice_emitter.issue import NO_SUBJECT
from meterstream.rating.money import EXACT, round_money

D = Decimal
COLUMNS = ["tenant", "event_id", "customer", "subject", "meter", "time", "period", "quantity", "amount", "cumulative",
           "currency", "plan", "line", "dimensions"]  # fmt: skip
AT = datetime(2026, 12, 1, 10, tzinfo=UTC)


def _row(tenant: str, customer: str, subject: str, quantity: str, amount: str, currency: str = "USD") -> list:
    return [tenant, uuid.uuid4().hex, customer, subject, "api_calls", AT, "2026-12", D(quantity), D(amount),
            D(quantity), currency, "volume", "api_calls", {}]  # fmt: skip


ROWS = [
    # iotco's volume plan with a 250.00 minimum: u1's 90,000 calls took the customer to 250.00 (its streamed delta),
    # u2's 20,000 more kept it there (delta 0). 250.00 = 25,000 cents by 90,000 : 20,000 of 110,000:
    # u1 25,000 x 9/11 = 20,454.54... -> 20,454, remainder .54; u2 25,000 x 2/11 = 4,545.45... -> 4,545, remainder .45;
    # 25,000 - 20,454 - 4,545 = 1 cent left, to the larger remainder (u1): u1 204.55, u2 45.45
    _row("iotco", "acme", "u1", "90000", "250"),
    _row("iotco", "acme", "u2", "20000", "0"),
    # another tenant's customer of the same name: a pool of its own
    _row("other", "acme", "u1", "10000", "999"),
    # a volume price falling: 10.00, then -2.00 (200 calls at 0.04 = 8.00): 8.00 by 100 : 100 -> 4.00, 4.00
    _row("iotco", "down", "u1", "100", "10.00"),
    _row("iotco", "down", "u2", "100", "-2.00"),
    # 4 + 3 + 3.004 = 10.004 -> 10.00 = 1,000 cents in three equal parts: 333 each, 1 left, equal remainders: to the
    # first subject id, '' counting as '(no subject)' ('(' sorts before 'a'): 3.34, 3.33, 3.33
    _row("iotco", "ties", "", "1", "4"),
    _row("iotco", "ties", "a", "1", "3"),
    _row("iotco", "ties", "b", "1", "3.004"),
    # one cent between '' and '#1', equal quantities: '#1' sorts before '(no subject)' ('#' before '('), so it is '#1's
    _row("iotco", "ties2", "", "2", "0.004"),
    _row("iotco", "ties2", "#1", "2", "0.006"),
    # JPY (no minor unit): 50.2 + 50.3 = 100.5 -> 101 (half away from zero) by 1 : 2: 33.67 -> 33 (rem 2/3),
    # 67.33 -> 67 (rem 1/3), 1 left to s1: 34, 67
    _row("iotco", "yen", "s1", "1", "50.2", "JPY"),
    _row("iotco", "yen", "s2", "2", "50.3", "JPY"),
    # quantities all 0 (a flat amount): 0.40 + 0.60 = 1.00 in equal parts, 0.50 each
    _row("iotco", "flat", "p", "0", "0.40"),
    _row("iotco", "flat", "q", "0", "0.60"),
    # a credit: -10.00 split as 10.00 (3.34, 3.33, 3.33 by subject id) and negated
    _row("iotco", "credit", "x", "5", "-4"),
    _row("iotco", "credit", "y", "5", "-3"),
    _row("iotco", "credit", "z", "5", "-3"),
    # half a cent rounds away from zero: 0.125 -> 0.13, all of it to the only subject
    _row("iotco", "half", "only", "3", "0.125"),
]


@pytest.fixture(scope="module")
def db(chdb_client) -> str:  # type: ignore[no-untyped-def]
    name = f"shares_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, name)
    chdb_client.insert(f"{name}.rated_usage", ROWS, column_names=COLUMNS)
    chdb_client.insert(f"{name}.rated_usage", ROWS[:1], column_names=COLUMNS)  # a replay: FINAL keeps one
    return name


def _shares(client, db: str, tenant: str, customer: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    return [tuple(r) for r in client.query(
        f"SELECT subject, quantity, streamed_amount, running_amount, amount FROM {db}.subject_shares_open "
        "WHERE tenant = {t:String} AND customer = {c:String} ORDER BY subject",
        parameters={"t": tenant, "c": customer}).result_rows]  # fmt: skip


def test_the_iotco_volume_plan_s_users_get_their_fair_shares(chdb_client, db: str) -> None:
    assert _shares(chdb_client, db, "iotco", "acme") == [
        ("u1", D(90000), D(250), D(250), D("204.55")),
        ("u2", D(20000), D(0), D(250), D("45.45")),
    ]
    assert _shares(chdb_client, db, "other", "acme") == [("u1", D(10000), D(999), D(999), D(999))]


def test_shares_never_go_negative_when_the_price_falls(chdb_client, db: str) -> None:
    assert [(s, a) for s, _, _, _, a in _shares(chdb_client, db, "iotco", "down")] == [("u1", D(4)), ("u2", D(4))]


def test_ties_no_subject_currencies_flat_amounts_credits_and_half_cents(chdb_client, db: str) -> None:
    def amounts(customer: str) -> dict[str, Decimal]:
        return {s: a for s, _, _, _, a in _shares(chdb_client, db, "iotco", customer)}

    assert amounts("ties") == {"": D("3.34"), "a": D("3.33"), "b": D("3.33")}
    assert amounts("ties2") == {"": D(0), "#1": D("0.01")}
    assert amounts("yen") == {"s1": D(34), "s2": D(67)}
    assert amounts("flat") == {"p": D("0.50"), "q": D("0.50")}
    assert amounts("credit") == {"x": D("-3.34"), "y": D("-3.33"), "z": D("-3.33")}
    assert amounts("half") == {"only": D("0.13")}
    running = {c: r for c in ("ties", "yen", "credit") for _, _, _, r, _ in _shares(chdb_client, db, "iotco", c)}
    assert running == {"ties": D("10.00"), "yen": D(101), "credit": D(-10)}


# --- random pools against billing.allocation.subject_shares ----------------------------------------------------

SUBJECTS = ["", "#1", "a", "b", "B", "user-1", "zz"]
quantities = st.builds(lambda n, k: D(n).scaleb(-k), st.integers(0, 10**9), st.integers(0, 12))
amounts = st.builds(lambda n, k: D(n).scaleb(-k), st.integers(-(10**12), 10**12), st.integers(0, 18))
events = st.lists(st.tuples(st.sampled_from(SUBJECTS), quantities, amounts), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=events, currency=st.sampled_from(["USD", "JPY", "KWD", "CLF"]))
def test_random_pools_match_subject_shares(chdb_client, db: str, events: list, currency: str) -> None:  # type: ignore[no-untyped-def]
    customer = uuid.uuid4().hex
    rows = [_row("rand", customer, s, str(q), str(a), currency) for s, q, a in events]
    chdb_client.insert(f"{db}.rated_usage", rows, column_names=COLUMNS)
    total, per_subject = D(0), {}
    for s, q, a in events:
        total = EXACT.add(total, a)
        per_subject[s or NO_SUBJECT] = EXACT.add(per_subject.get(s or NO_SUBJECT, D(0)), q)
    running = round_money(total, currency)
    want = {x.subject: x.amount for x in subject_shares(running, per_subject, currency)}
    got = {(s or NO_SUBJECT): (r, a) for s, _, _, r, a in _shares(chdb_client, db, "rand", customer)}
    assert {s: a for s, (_, a) in got.items()} == want
    assert {r for r, _ in got.values()} == {running}
    assert sum(want.values()) == running
