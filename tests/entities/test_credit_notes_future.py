"""A credit note dated ahead of today is refused (session 17, the audit's item 4): `create_credit_note(...,
issue_date=<next year>)` was stored and numbered in a series not yet open (ACME-CN-2027-000001), dated into a month
not yet come. Now `Invalid("issue_date", ...)` names the dates (today is UTC: the issuer has no time zone of its
own), consumes no number, stores nothing; the API answers 422 naming the field, the CLI one line.

The invoice is issued 2026-12-01 (invoice_helpers.issued), so today (the machine's clock, 2026-12-02 or later)
lies between the invoice's date and tomorrow."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from invoice_helpers import TENANT, issued

from meterstream.entities import numbering
from meterstream.entities.common import Invalid
from meterstream.entities.credit_notes import create_credit_note, list_credit_notes

ONE = [{"description": "storage overbilled", "amount": "1.00"}]


def today():  # type: ignore[no-untyped-def]
    return datetime.now(UTC).date()


def test_tomorrow_is_refused_naming_the_field_and_consuming_no_number(sf) -> None:
    issued(sf, "inv-1", total="120.00")
    tomorrow, next_year = today() + timedelta(days=1), today() + timedelta(days=366)
    for day in (tomorrow, next_year):
        with pytest.raises(Invalid) as exc:
            create_credit_note(sf, TENANT, "inv-1", "r", ONE, issue_date=day)
        assert exc.value.field == "issue_date"
        assert f"{day.isoformat()} is later than today ({today().isoformat()}, UTC)" in str(exc.value)
    assert list_credit_notes(sf, TENANT) == []
    assert numbering.last_number(sf, TENANT, "ACME", "CN", next_year.year) == 0
    # today, and the default (today), are fine: numbered 1 and 2 in this year's series
    assert create_credit_note(sf, TENANT, "inv-1", "r", ONE, issue_date=today()).number.endswith("-000001")
    default = create_credit_note(sf, TENANT, "inv-1", "r", ONE)
    assert (default.issue_date, default.number) == (today(), f"ACME-CN-{today().year}-000002")


def test_a_dated_timeline_names_its_own_today(sf) -> None:
    """`today=`: a replay of a dated timeline (a test's 2027) checks against its own day, not the machine's."""
    issued(sf, "inv-1", total="120.00")
    day = today() + timedelta(days=366)
    before = day - timedelta(days=1)
    with pytest.raises(Invalid) as exc:
        create_credit_note(sf, TENANT, "inv-1", "r", ONE, issue_date=day, today=before)
    assert f"{day.isoformat()} is later than today ({before.isoformat()}, UTC)" in str(exc.value)
    assert create_credit_note(sf, TENANT, "inv-1", "r", ONE, issue_date=day, today=day).issue_date == day


def test_the_api_answers_422_naming_issue_date(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
    from api_helpers import error, offline_app, role_key
    from fastapi.testclient import TestClient
    from finance_helpers import store_invoice

    with TestClient(offline_app(tmp_path)) as client:
        admin = role_key(client)
        store_invoice(client.app.state.sessions, "acme", "INV-A", "cust-1")
        note = {"invoice_id": "INV-A", "reason": "r", "lines": [{"description": "x", "amount": "1.00"}]}
        ahead = client.post("/v1/credit_notes", json={**note, "issue_date": str(today() + timedelta(days=1))},
                            headers=admin)  # fmt: skip
        assert error(ahead) == (422, "invalid", "issue_date"), ahead.json()
        assert "later than today" in ahead.json()["error"]["message"]
        assert client.get("/v1/credit_notes", headers=admin).json()["items"] == []
        ok = client.post("/v1/credit_notes", json={**note, "issue_date": str(today())}, headers=admin)
        assert ok.status_code == 201 and ok.json()["issue_date"] == str(today())
