"""GET /v1/usage grouped by subject: each user's fair share of its customer's amount, never a sum of per-event
deltas (negative under volume pricing). Rated rows made by hand, as a volume-priced plan streams them; every
expected amount computed by hand below."""

from __future__ import annotations

import uuid
from decimal import Decimal

import orjson
import pytest
from api_helpers import bearer

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_FIELDS

pytestmark = pytest.mark.kafka


def _rec(eid, customer, subject, time, quantity, amount, meter="api_calls", tenant="acme", dims=None):  # type: ignore[no-untyped-def]
    return {
        "tenant": tenant, "id": eid, "customer": customer, "subject": subject, "meter": meter, "time": time,
        "period": time[:7], "quantity": quantity, "amount": amount, "cumulative": quantity, "currency": "USD",
        "plan": "volume", "line": meter, "dimensions": dims or {}, "source": "", "src_partition": 0, "src_offset": 1,
    }  # fmt: skip


# Plan "volume" on api_calls: a period's units all at one price, by the period's cumulative quantity:
# up to 100 units 1.00 USD each, above 100 units 0.45 USD each. The stream rates each event as the change of
# the customer's period amount:
#   e1 u1 30    on 11-02  cum  30   -> 30.00              streamed +30.00
#   e2 u1 50    on 11-03  cum  80   -> 80.00              streamed +50.00
#   e3 u2 40.5  on 11-03  cum 120.5 -> 120.5 x 0.45 = 54.225   streamed -25.775  (u2's streamed sum: negative)
#   e4 u3 0.7   on 11-04  cum 121.2 -> 121.2 x 0.45 = 54.54    streamed  +0.315
# The customer's period amount: 54.54 USD = 5454 cents, shared by quantity (121.2 in all):
#   u1 5454 x 80 / 121.2 = 3600 exactly; u2 5454 x 40.5 / 121.2 = 1822.5; u3 5454 x 0.7 / 121.2 = 31.5;
#   floors 3600 + 1822 + 31 = 5453, the cent left goes to the larger remainder, .5 and .5 tie: the first subject
#   id, u2. So u1 36.00, u2 18.23, u3 0.31 (adds up to 54.54).
#   u1's 36.00 by day, 30 : 50 -> 13.50 on 11-02 and 22.50 on 11-03.
# December (another period, u1 alone): 10 units at 1.00 = 10.00, all u1's.
# Tenant "other" has a customer c1 too; none of it counts for acme's c1.
ROWS = [
    _rec("e1", "c1", "u1", "2026-11-02T10:00:00.000Z", "30", "30.00", dims={"region": "eu"}),
    _rec("e2", "c1", "u1", "2026-11-03T10:00:00.000Z", "50", "50.00", dims={"region": "us"}),
    _rec("e3", "c1", "u2", "2026-11-03T11:00:00.000Z", "40.5", "-25.775", dims={"region": "eu"}),
    _rec("e4", "c1", "u3", "2026-11-04T09:00:00.000Z", "0.7", "0.315", dims={"region": "eu"}),
    _rec("e5", "c1", "u1", "2026-12-01T09:00:00.000Z", "10", "10.00", dims={"region": "eu"}),
    _rec("o1", "c1", "u2", "2026-11-03T11:00:00.000Z", "1000", "-400", tenant="other"),
]


@pytest.fixture
def reader(make_client, api_settings, chdb_client):  # type: ignore[no-untyped-def]
    db = f"shares_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    chdb_client.raw_insert(f"{db}.rated_usage", RATED_FIELDS, b"\n".join(orjson.dumps(r) for r in ROWS),
                           fmt="JSONEachRow")  # fmt: skip
    client = make_client(api_settings.model_copy(update={"clickhouse_database": db}), clickhouse_client=chdb_client)
    return client, bearer(client, tenant="acme", role="read")


def _rows(client, auth, **params):  # type: ignore[no-untyped-def]
    r = client.get("/v1/usage", params=params, headers=auth)
    assert r.status_code == 200, r.text
    return r.json()["rows"]


NOVEMBER = {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}


def test_per_user_amounts_are_fair_shares_not_negative_deltas(reader) -> None:
    client, acme = reader
    rows = _rows(client, acme, group_by="subject", customer="c1", **NOVEMBER)
    got = [(r["subject"], r["quantity"], r["amount"], r["events"]) for r in rows]
    assert got == [("u1", "80", "36", 2), ("u2", "40.5", "18.23", 1), ("u3", "0.7", "0.31", 1)]
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal("54.54")  # the customer's amount, exactly
    customer = _rows(client, acme, group_by="customer", customer="c1", **NOVEMBER)
    assert [r["amount"] for r in customer] == ["54.54"]  # the streamed sum: 30 + 50 - 25.775 + 0.315


def test_per_user_per_day_adds_up_to_the_users_share(reader) -> None:
    client, acme = reader
    rows = _rows(client, acme, group_by=["subject", "meter"], window="day", customer="c1")
    got = [(r["window_start"][:10], r["subject"], r["amount"]) for r in rows]
    assert got == [
        ("2026-11-02", "u1", "13.5"),
        ("2026-11-03", "u1", "22.5"),
        ("2026-11-03", "u2", "18.23"),
        ("2026-11-04", "u3", "0.31"),
        ("2026-12-01", "u1", "10"),  # December: its own period, its own amount
    ]


def test_a_range_inside_the_period_shows_its_part_of_the_periods_shares(reader) -> None:
    # from 11-03: u1's day 11-02 (30 units) is outside but still in the period, so u1's share 36.00 is split
    # 50 : 30 and only 22.50 shows; u2's share does not depend on the range
    client, acme = reader
    rows = _rows(client, acme, group_by="subject", **{"from": "2026-11-03T00:00:00Z", "to": "2026-11-04T00:00:00Z"})
    assert [(r["subject"], r["amount"]) for r in rows] == [("u1", "22.5"), ("u2", "18.23")]
    only = _rows(client, acme, group_by="subject", subject="u2")  # one user: its share of everybody's amount
    assert [(r["subject"], r["amount"]) for r in only] == [("u2", "18.23")]


def test_with_a_dimension_the_cells_of_a_user_add_up_to_its_share(reader) -> None:
    # u1 in November: eu 30 and us 50 -> 36.00 split 30 : 50 = 13.50 and 22.50; December (eu, 10.00) adds to eu
    client, acme = reader
    rows = _rows(client, acme, group_by=["subject", "dimensions.region"], subject="u1")
    assert [(r["dimensions"]["region"], r["amount"], r["events"]) for r in rows] == [("eu", "23.5", 2),
                                                                                     ("us", "22.5", 1)]  # fmt: skip


def _cell(subject: str, quantity: str, amount: str) -> dict[str, object]:
    return {"customer": "c1", "meter": "m", "currency": "USD", "period": "2026-11", "subject": subject,
            "quantity": quantity, "amount": amount, "events": 1}  # fmt: skip


def test_usage_without_a_subject_is_named_as_on_the_invoice() -> None:
    # 0.01 USD between "" and "#1", 1 unit each: one cent, equal remainders, so it goes to the first name in order.
    # The invoice names usage without a subject "(no subject)", which sorts after "#1" ("(" > "#"): "#1" gets it.
    from meterstream.api.queries import fair_amounts

    cells = [_cell("", "1", "0.004"), _cell("#1", "1", "0.006")]
    pools = {("c1", "m", "USD", "2026-11"): {"": (Decimal(1), Decimal("0.004")), "#1": (Decimal(1), Decimal("0.006"))}}
    fair_amounts(cells, pools)
    assert [(c["subject"], c["amount"]) for c in cells] == [("", "0"), ("#1", "0.01")]


def test_a_period_with_a_negative_quantity_keeps_its_streamed_amounts() -> None:
    from meterstream.api.queries import fair_amounts

    cells = [_cell("u1", "5", "2.5"), _cell("u2", "-1", "-0.5")]  # a correction: nothing fair to share by
    pools = {("c1", "m", "USD", "2026-11"): {"u1": (Decimal(5), Decimal("2.5")), "u2": (Decimal(-1), Decimal("-0.5"))}}
    fair_amounts(cells, pools)
    assert [c["amount"] for c in cells] == ["2.5", "-0.5"]
