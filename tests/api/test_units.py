"""Pure parts of the API: token buckets, the usage SQL plan, windows, the recent-ids index, unmatched events."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from meterstream.api.ingest import RecentIds
from meterstream.api.queries import QueryError, UsageQuery, plan_usage, window_bounds
from meterstream.api.ratelimit import TokenBuckets, retry_after_header
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.entities.unmatched import UnmatchedRepository
from meterstream.schemas.settings import Settings


def test_token_bucket_bursts_then_refills_at_the_rate() -> None:
    now = [100.0]
    b = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [b.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("k") == pytest.approx(0.5)  # empty: one token comes every 1/2 s
    now[0] += 0.5
    assert b.take("k") == 0.0
    assert b.take("other") == 0.0  # per key
    now[0] += 100
    assert [b.take("k") for _ in range(4)][-1] > 0  # refills to the burst, not beyond
    assert retry_after_header(0.2) == {"Retry-After": "1"} and retry_after_header(2.1) == {"Retry-After": "3"}
    assert TokenBuckets(rate=0, burst=1).take("k") == 0.0  # 0 = no limit


def test_usage_sql_carries_user_values_only_as_parameters() -> None:
    evil = "x' OR 1=1 --"
    q = UsageQuery(tenant=evil, group_by=("meter", "dimensions." + evil), window="day", tz="Europe/Berlin",
                   customer=evil, subject=evil, meters=(evil,),
                   start=datetime(2026, 10, 1, tzinfo=UTC), end=datetime(2026, 11, 1, tzinfo=UTC))  # fmt: skip
    sql, params, names = plan_usage(q, "meterstream")
    assert evil not in sql
    assert "FROM meterstream.rated_usage FINAL WHERE tenant = {tenant:String}" in sql
    assert params["tenant"] == evil and params["customer"] == evil and params["meters"] == [evil]
    assert params["d1"] == evil and params["tz"] == "Europe/Berlin"
    assert names == ["window", "meter", "dimensions." + evil]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"group_by": ("price",)}, "group_by"),
        ({"group_by": ("meter", "meter")}, "group_by"),
        ({"group_by": ("dimensions.",)}, "group_by"),
        ({"tz": "Not/AZone"}, "tz"),
        ({"start": datetime(2026, 2, 1, tzinfo=UTC), "end": datetime(2026, 1, 1, tzinfo=UTC)}, "to"),
    ],
)
def test_usage_plan_refuses_naming_the_parameter(kwargs, field) -> None:
    with pytest.raises(QueryError) as err:
        plan_usage(UsageQuery(tenant="t", **kwargs), "db")
    assert err.value.field == field


def test_windows_follow_the_zone_calendar() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 2026-03-29: clocks go forward in Berlin, the day has 23 hours
    start = datetime(2026, 3, 29, tzinfo=berlin)
    s, e = window_bounds(int(start.timestamp()), "day", berlin)
    assert (e.astimezone(UTC) - s.astimezone(UTC)).total_seconds() == 23 * 3600
    assert e.isoformat() == "2026-03-30T00:00:00+02:00"
    s, e = window_bounds(int(datetime(2026, 12, 1, tzinfo=UTC).timestamp()), "month", ZoneInfo("UTC"))
    assert e.isoformat() == "2027-01-01T00:00:00+00:00"
    s, e = window_bounds(int(datetime(2026, 10, 25, 0, 0, tzinfo=UTC).timestamp()), "hour", berlin)
    assert (s.isoformat(), e.isoformat()) == ("2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00")


def test_recent_ids_are_bounded_oldest_first() -> None:
    ids = RecentIds(capacity=3)
    ids.add_all([("t", "a"), ("t", "b"), ("t", "c"), ("t", "d")])
    assert ("t", "a") not in ids and all(("t", x) in ids for x in "bcd")
    assert ("u", "b") not in ids
    off = RecentIds(capacity=0)
    off.add_all([("t", "a")])
    assert ("t", "a") not in off


def test_unmatched_events_are_kept_listed_counted_and_replayed_once(tmp_path) -> None:
    settings = Settings(home=tmp_path)
    engine = make_engine(settings)
    migrate(settings, engine)
    repo = UnmatchedRepository(session_factory(engine))
    for i in range(5):
        repo.add("acme", {"id": f"e{i}", "type": "tokens" if i % 2 == 0 else "calls", "data": {"n": i}},
                 event_type="tokens" if i % 2 == 0 else "calls", source="s", event_id=f"e{i}")  # fmt: skip
    repo.add("other", {"id": "x"}, event_type="tokens")
    assert repo.count("acme") == 5 and repo.count("acme", event_type="tokens") == 3 and repo.count("other") == 1
    assert [u.event["id"] for u in repo.list("acme", event_type="tokens")] == ["e0", "e2", "e4"]

    def translate(ev):  # type: ignore[no-untyped-def]
        # e2 still matches nothing (say its value property is missing): it stays unmatched
        return [] if ev["id"] == "e2" else [{"id": ev["id"], "quantity": str(ev["data"]["n"])}]

    def failing_submit(tenant, events):  # type: ignore[no-untyped-def]
        raise RuntimeError("Kafka down")

    with pytest.raises(RuntimeError):
        repo.replay("acme", "tokens", translate, failing_submit)
    assert repo.count("acme", event_type="tokens") == 3  # nothing marked when the submit failed

    submitted = []
    assert repo.replay("acme", "tokens", translate, lambda t, evs: submitted.append((t, evs)), batch=1) == 2
    assert submitted == [("acme", [{"id": "e0", "quantity": "0"}]), ("acme", [{"id": "e4", "quantity": "4"}])]
    assert [u.event["id"] for u in repo.list("acme", event_type="tokens")] == ["e2"]
    assert repo.replay("acme", "tokens", translate, lambda t, evs: submitted.append(1)) == 0  # once
    assert repo.count("other") == 1


def test_processes_migrating_a_fresh_store_at_once_all_succeed(tmp_path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from meterstream.schemas.settings import Settings; "
        "from meterstream.entities.db import migrate; migrate(Settings(home=sys.argv[1]))"
    )
    cmd = [sys.executable, "-c", code, str(tmp_path)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err.decode()[-500:] for _, err in outs]
    from sqlalchemy import text

    engine = make_engine(Settings(home=tmp_path))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() is not None
        assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar() == 0
