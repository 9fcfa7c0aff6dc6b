"""Retention of the kept external events (METERSTREAM_UNMATCHED_RETENTION_DAYS): the daily billing run's purge of
unmatched events and Lago event errors received longer ago, on SQLite and PostgreSQL. Run on 1 December 2026 with
30 days: what came before 1 November is deleted, the rest (1 November itself included) stays."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update

from meterstream.deploy.billing_run import BillingRunResult, _purge, describe
from meterstream.entities import lago_event_errors, unmatched

AT = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def _unmatched(sf, tenant: str, event_id: str, received: datetime) -> None:  # type: ignore[no-untyped-def]
    new_id = unmatched.UnmatchedRepository(sf).add(tenant, {"id": event_id}, event_type="calls", event_id=event_id)
    with sf.begin() as s:
        s.execute(update(unmatched.UnmatchedEvent).where(unmatched.UnmatchedEvent.id == new_id)
                  .values(received_at=received))  # fmt: skip


def _kept(sf) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    with sf() as s:
        events = sorted(s.scalars(select(unmatched.UnmatchedEvent.event_id)))
        errors = sorted(s.scalars(select(lago_event_errors.LagoEventErrorRow.transaction_id)))
    return events, errors


def test_purge_deletes_what_is_older_than_the_retention(sf) -> None:  # type: ignore[no-untyped-def]
    _unmatched(sf, "t1", "old", datetime(2026, 10, 31, 23, 59, tzinfo=UTC))
    _unmatched(sf, "t2", "edge", datetime(2026, 11, 1, 6, 0, tzinfo=UTC))  # exactly 30 days before: kept
    _unmatched(sf, "t1", "new", datetime(2026, 11, 20, tzinfo=UTC))
    error = lago_event_errors.EventError
    lago_event_errors.record(sf, "t1", [error("tx-old", "calls", lago_event_errors.INVALID_CODE)],
                             now=datetime(2026, 9, 1, tzinfo=UTC))  # fmt: skip
    lago_event_errors.record(sf, "t1", [error("tx-new", "calls", lago_event_errors.INVALID_CODE)],
                             now=datetime(2026, 11, 30, tzinfo=UTC))  # fmt: skip

    assert _purge(sf, 0, AT) == ({"unmatched_events": 0, "lago_event_errors": 0}, None)  # 0: kept for ever
    assert _kept(sf) == (["edge", "new", "old"], ["tx-new", "tx-old"])
    purged, error_text = _purge(sf, 30, AT)
    assert (purged, error_text) == ({"unmatched_events": 1, "lago_event_errors": 1}, None)
    assert _kept(sf) == (["edge", "new"], ["tx-new"])
    assert _purge(sf, 30, AT)[0] == {"unmatched_events": 0, "lago_event_errors": 0}  # again: nothing more

    said = describe(BillingRunResult(purged=purged).to_json())
    assert "2 unmatched events and Lago event errors past their retention deleted" in said


def test_a_failed_purge_is_said_and_fails_the_run() -> None:
    class Gone:
        def begin(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("database gone")

    purged, error_text = _purge(Gone(), 30, AT)
    assert purged is None and error_text == "RuntimeError: database gone"
    result = BillingRunResult(purge_error=error_text)
    assert result.exit_code == 1
    assert "purge of old unmatched events failed: RuntimeError: database gone" in describe(result.to_json())
