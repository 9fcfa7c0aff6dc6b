"""POST /v1/authorize (api/routes/authorize.py) on the in-process app, the balance from the wallets' ledger over
the embedded ClickHouse, or from a snapshot of the balances feed; holds (entities/holds.py) reduce later
authorizations, are consumed and released by the session's rated records, and end by expiry.

Plan (bench/authorize_setup.py, shared with bench/authorize.py; hand-computable, as
tests/rating/telecom/test_max_duration.py): Berlin, peak Mon-Fri 08:00-18:00. National
calls (49...) 0.10 connect fee, 60/60, 0.06/min peak, 0.03/min off-peak; bundle FREE5 of 5 free minutes.
Usage meters: api_calls 0.003 EUR per call; tokens graduated, 100 free then 0.01 each. 2025-03-04 is a Tuesday.
Every expected figure is worked by hand in the comments.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from by_path import load
from fastapi.testclient import TestClient

from meterstream.aggregation.ddl import create_schema
from meterstream.api.routes.authorize import AuthorizeOut, feed_of
from meterstream.entities import holds
from meterstream.entities.common import Invalid, NotFound
from meterstream.schemas.provisioning import BalanceSnapshot

setup = load("bench/authorize_setup.py")  # the plan and app of bench/authorize.py
NAT, add_customer, example_app = setup.NAT, setup.add_customer, setup.example_app

TUE_10 = "2025-03-04T10:00:00+01:00"  # Berlin, peak


@pytest.fixture
def app(tmp_path: Path, chdb_client):  # type: ignore[no-untyped-def]
    db = f"a_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    application = example_app(tmp_path, clickhouse_client=chdb_client, clickhouse_database=db)
    with TestClient(application) as client:
        for customer in ("c1", "c2"):
            add_customer(application, customer)
        admin = {"Authorization": f"Bearer {application.state.keys.create('t1', 'admin', 'a')[1]}"}
        ingest = {"Authorization": f"Bearer {application.state.keys.create('t1', 'ingest', 'i')[1]}"}
        r = client.post("/v1/customers/c1/wallets", headers=admin, json={"name": "Main", "paid_credits": "1.00"})
        assert r.status_code == 201, r.text
        yield client, application, ingest


def auth(client, headers, **body):  # type: ignore[no-untyped-def]
    return client.post("/v1/authorize", headers=headers, json={"customer": "c1", **body})


def call(client, headers, **body):  # type: ignore[no-untyped-def]
    r = auth(client, headers, **{"meter": "voice_seconds", "dimensions": NAT, "start": TUE_10, **body})
    assert r.status_code == 200, r.text
    return r.json()


def test_longest_call_for_the_balance(app) -> None:  # type: ignore[no-untyped-def]
    client, _, ingest = app
    # balance 1.00 EUR (the wallet's paid credits, no usage yet), bundle counted used up:
    # 0.10 connect + 15 x 0.06 = 1.00 -> 15 minutes = 900 s, and it costs exactly 1.00
    a = call(client, ingest)
    assert (a["balance"], a["balance_source"], a["held"], a["available"]) == ("1.00", "ledger", "0", "1.00")
    assert (a["kind"], a["allowed"], a["allowed_duration_seconds"], a["charge"]) == ("voice", "900", "900", "1.0000")
    assert (a["unlimited"], a["granted"], a["hold"]) == (False, True, None)
    # the 5 free minutes still unused: 5 free, then 0.10 + 15 x 0.06: 20 minutes = 1200 s
    assert call(client, ingest, bundle_used={"FREE5": "0"})["allowed"] == "1200"
    # 17:55: 0.10 + 5 peak minutes (0.30) = 0.40 by 18:00; 0.60 / 0.03 = 20 off-peak minutes: 25 min = 1500 s
    assert call(client, ingest, start="2025-03-04T17:55:00+01:00")["allowed"] == "1500"
    # asked for 10 minutes: granted, 0.10 + 10 x 0.06 = 0.70; asked for 20: 15 allowed, not granted
    ten = call(client, ingest, duration_seconds="600")
    assert (ten["allowed"], ten["charge"], ten["granted"], ten["requested"]) == ("600", "0.7000", True, "600")
    twenty = call(client, ingest, duration_seconds="1200")
    assert (twenty["allowed"], twenty["granted"]) == ("900", False)


def test_usage_meter_allowed_quantity(app) -> None:  # type: ignore[no-untyped-def]
    client, _, ingest = app
    # 1.00 / 0.003 = 333.33..: 333 calls cost 0.999; the 334th would make 1.002
    a = auth(client, ingest, meter="api_calls").json()
    assert (a["kind"], a["allowed"], a["charge"], a["allowed_duration_seconds"]) == ("usage", "333", "0.999", None)
    assert auth(client, ingest, meter="api_calls", quantity="100").json()["allowed"] == "100"
    # graduated: nothing used this period; 100 free, then 1.00 / 0.01 = 100 more: 200 tokens
    t = auth(client, ingest, meter="tokens").json()
    assert (t["allowed"], t["charge"]) == ("200", "1.00")


def test_a_hold_reduces_the_next_authorization_and_the_same_session_replaces_its_own(app) -> None:  # type: ignore[no-untyped-def]
    client, _, ingest = app
    # session s1 holds 5 minutes: 0.10 + 5 x 0.06 = 0.40
    first = call(client, ingest, duration_seconds="300", hold=True, session_id="s1")
    assert (first["allowed"], first["charge"]) == ("300", "0.4000")
    assert (first["hold"]["amount"], first["hold"]["status"], first["hold"]["session_id"]) == ("0.4000", "active", "s1")
    # another call now sees 1.00 - 0.40 = 0.60: 0.10 + 8 x 0.06 = 0.58, a 9th minute would make 0.64: 480 s
    second = call(client, ingest, session_id="s2")
    assert (second["held"], second["available"], second["allowed"]) == ("0.4000", "0.6000", "480")
    # s1 asking again replaces its own hold: it sees the whole 1.00 (900 s), and its hold becomes 1.00
    again = call(client, ingest, hold=True, session_id="s1")
    assert (again["held"], again["allowed"], again["hold"]["amount"]) == ("0", "900", "1.0000")
    assert again["hold"]["id"] == first["hold"]["id"]
    # a usage meter sees the same holds: nothing left for api calls
    assert auth(client, ingest, meter="api_calls").json()["allowed"] == "0"


def test_the_final_record_releases_the_hold(app) -> None:  # type: ignore[no-untyped-def]
    client, application, ingest = app
    sf = application.state.sessions
    held = call(client, ingest, duration_seconds="600", hold=True, session_id="call-7")  # 0.10 + 10 x 0.06 = 0.70
    assert held["hold"]["amount"] == "0.7000"
    # an interim record of the session rated 0.22 (connect + 2 minutes): the hold still reserves 0.70 - 0.22 = 0.48
    rec = {"tenant": "t1", "customer": "c1", "amount": "0.22", "dimensions": {"session_id": "call-7"}}
    other = {"tenant": "t1", "customer": "c1", "amount": "5", "dimensions": {"session_id": "not-held"}}
    assert holds.consume_rated(sf, [rec, other, {**rec, "dimensions": {}}]) == 1
    assert call(client, ingest)["held"] == "0.4800"
    # the final record (final=true) releases it: no hold left
    final = {**rec, "amount": "0.06", "dimensions": {"session_id": "call-7", "final": "true"}}
    assert holds.consume_rated(sf, [final]) == 1
    got = client.get(f"/v1/authorize/holds/{held['hold']['id']}", headers=ingest).json()
    assert (got["status"], got["reason"], got["consumed"], got["remaining"]) == ("released", "final record", "0.28",
                                                                                  "0.4200")  # fmt: skip
    assert call(client, ingest)["held"] == "0"
    # the session is over: a new hold for it is refused naming session_id
    r = auth(client, ingest, meter="voice_seconds", dimensions=NAT, start=TUE_10, hold=True, session_id="call-7")
    assert (r.status_code, r.json()["error"]["field"]) == (409, "session_id")


def test_a_hold_ends_by_expiry(app) -> None:  # type: ignore[no-untyped-def]
    client, application, ingest = app
    h = call(client, ingest, duration_seconds="300", hold=True, session_id="s9", hold_ttl_seconds=1)["hold"]
    assert call(client, ingest)["held"] == "0.4000"
    time.sleep(1.1)
    assert call(client, ingest)["held"] == "0"  # expired: counts for nothing, before any sweep
    assert client.get(f"/v1/authorize/holds/{h['id']}", headers=ingest).json()["status"] == "expired"
    assert holds.expire(application.state.sessions) == 1  # the sweep marks it
    assert holds.get_hold(application.state.sessions, "t1", h["id"]).status == "expired"


def test_the_balance_from_the_feed_snapshot(app) -> None:  # type: ignore[no-untyped-def]
    client, application, ingest = app
    feed_of(application).put(BalanceSnapshot(tenant="t1", customer="c1", currency="EUR", balance="0.40",
                                             consumed="0.60", as_of="2026-12-01T10:00:00Z"))  # fmt: skip
    # 0.40 = 0.10 + 5 x 0.06: 300 s
    a = call(client, ingest)
    assert (a["balance"], a["balance_source"], a["balance_as_of"], a["allowed"]) == (
        "0.40",
        "stream",
        "2026-12-01T10:00:00Z",
        "300",
    )
    # a snapshot in another currency is not this plan's balance: the ledger answers (1.00 -> 900 s)
    feed_of(application).put(BalanceSnapshot(tenant="t1", customer="c1", currency="USD", balance="0",
                                             consumed="0", as_of="2026-12-01T10:00:00Z"))  # fmt: skip
    assert call(client, ingest)["allowed"] == "900"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"customer": "nobody"}, 404, "customer"),
        ({"customer": "c2"}, 422, "customer"),  # no wallet: not prepaid
        ({"dimensions": {"destination": "+1555"}}, 422, "dimensions.destination"),  # no rate for it
        ({"dimensions": {}}, 422, "dimensions.destination"),
        ({"duration_seconds": "-1"}, 422, "duration_seconds"),
        ({"duration_seconds": "60", "quantity": "1"}, 422, "duration_seconds"),
        ({"meter": "storage"}, 422, "meter"),
        ({"start": "2025-03-04T10:00:00"}, 422, "start"),
        ({"hold_ttl_seconds": 0}, 422, "hold_ttl_seconds"),
        ({"surprise": 1}, 422, "surprise"),
    ],
)
def test_bad_input_names_the_field(app, body, status, field) -> None:  # type: ignore[no-untyped-def]
    client, _, ingest = app
    r = auth(client, ingest, **{"meter": "voice_seconds", "dimensions": NAT, "start": TUE_10, **body})
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"] == field, r.text


def test_the_answer_is_what_the_documented_model_serializes(app) -> None:  # type: ignore[no-untyped-def]
    """The route serializes its answer itself (no response_model validation at run time): the JSON must be what
    AuthorizeOut would make of it, datetimes included (UTC as Z, an offset kept)."""
    client, _, ingest = app
    for body in ({"duration_seconds": "300", "hold": True, "session_id": "ser"}, {"meter": "api_calls"}):
        r = auth(client, ingest, **{"meter": "voice_seconds", "dimensions": NAT, "start": TUE_10, **body})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
        assert AuthorizeOut.model_validate_json(r.content).model_dump(mode="json") == r.json()
    held = r.json()  # the usage answer: the voice hold of 0.10 + 5 x 0.06 = 0.40 is held
    assert (held["held"], held["start"], held["hold"]) == ("0.4000", "2025-03-04T10:00:00+01:00", None)
    hold = auth(client, ingest, meter="voice_seconds", dimensions=NAT, hold=True, session_id="ser2").json()["hold"]
    assert hold["expires_at"].endswith("Z")  # stored and answered in UTC


def test_roles_and_openapi(app) -> None:  # type: ignore[no-untyped-def]
    client, application, _ = app
    reader = {"Authorization": f"Bearer {application.state.keys.create('t1', 'read', 'r')[1]}"}
    assert auth(client, reader, meter="api_calls").status_code == 403
    assert auth(client, {}, meter="api_calls").status_code == 401
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/authorize"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/AuthorizeIn")
    out = spec["components"]["schemas"]["AuthorizeOut"]["properties"]
    assert {"allowed", "allowed_duration_seconds", "charge", "hold"} <= set(out)


def test_holds_store_rules(app) -> None:  # type: ignore[no-untyped-def]
    _, application, _ = app
    sf = application.state.sessions
    now = datetime(2026, 12, 1, 10, tzinfo=UTC)
    spec = holds.HoldSpec("t1", "c1", "api_calls", "EUR", D("0.5"), D(10), timedelta(minutes=5))
    a = holds.place_hold(sf, spec, now=now)
    b = holds.place_hold(sf, spec, now=now)  # without a session id: two holds
    assert a.id != b.id
    assert holds.held(sf, "t1", "c1", "EUR", now=now) == D("1.0")
    assert holds.held(sf, "t1", "c1", "USD", now=now) == 0
    assert holds.held(sf, "t1", "c1", "EUR", now=now + timedelta(minutes=5)) == 0  # expired at expires_at
    holds.release(sf, "t1", a.id, now=now)
    assert holds.held(sf, "t1", "c1", "EUR", now=now) == D("0.5")
    with pytest.raises(NotFound):
        holds.release(sf, "t2", b.id)
    with pytest.raises(Invalid) as e:
        holds.place_hold(sf, holds.HoldSpec("t1", "c1", "m", "EUR", D("-1"), D(1), timedelta(minutes=1)))
    assert e.value.field == "amount"
