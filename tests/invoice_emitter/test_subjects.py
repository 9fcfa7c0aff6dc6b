"""Per-subject quantities of a period (invoice_emitter/subjects.py `period_subjects`), read from the embedded
ClickHouse: a customer with any subject gets every meter and subject of its usage (the empty subject too, which
the per-user section shows as "(no subject)"); a customer without any subject is left out."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.invoice_emitter.subjects import period_subjects


def insert(client, db: str, customer: str, subject: str, quantity: str, meter: str = "api_calls",
           plan: str = "basic", period: str = "2026-10") -> None:  # fmt: skip
    t = datetime(int(period[:4]), int(period[5:]), 15, tzinfo=UTC)
    row = ["t1", uuid.uuid4().hex, customer, subject, meter, t, period, Decimal(quantity), Decimal(0),
           Decimal(0), "USD", plan, meter, {}, "", 0, 0]  # fmt: skip
    client.insert(f"{db}.rated_usage", [row], column_names=list(RATED_COLUMNS))


def test_customers_with_a_subject_get_all_their_usage_and_the_others_none(chdb_client, db: str) -> None:
    insert(chdb_client, db, "c1", "u1", "70")
    insert(chdb_client, db, "c1", "u1", "5")  # u1: 70 + 5 = 75
    insert(chdb_client, db, "c1", "", "25")
    insert(chdb_client, db, "c1", "", "5", meter="seats")  # no subject on this meter: kept, the customer has one
    insert(chdb_client, db, "c2", "", "20")  # no subject at all: left out
    insert(chdb_client, db, "c2", "", "3", meter="seats")
    insert(chdb_client, db, "c3", "u9", "1.5", plan="other")  # another plan: only when asked for
    insert(chdb_client, db, "c4", "u2", "8", period="2026-09")  # another period: never
    c1 = {"api_calls": {"u1": Decimal("75"), "": Decimal("25")}, "seats": {"": Decimal("5")}}
    assert period_subjects(chdb_client, db, "2026-10", ["basic"]) == {("t1", "c1"): c1}
    assert period_subjects(chdb_client, db, "2026-10", ["basic", "other"]) == {
        ("t1", "c1"): c1,
        ("t1", "c3"): {"api_calls": {"u9": Decimal("1.5")}},
    }
    assert period_subjects(chdb_client, db, "2026-10", []) == {}
    # quantities without the storage scale's trailing zeros, as the lines show them
    assert str(period_subjects(chdb_client, db, "2026-10", ["other"])[("t1", "c3")]["api_calls"]["u9"]) == "1.5"
