"""Tenant readers of the ClickHouse HTTP front: user = tenant id, password = one of its API keys.

The front runs in a subprocess over a store in a tmp dir, signing tenants in against a SQLite entity store
made here (the `api_keys` table, keys created with `KeyRepository` as `meterstream keys create` does).
Tenant `acme` has 3 rated events, `bolt` 1; every figure below is summed by hand from ROWS.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from front_process import key_store, running_front

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.http_front import INTERNAL_USER, front_client
from meterstream.entities.keys import KeyRepository
from meterstream.schemas.settings import Settings

PASSWORD = "writer-secret-for-tests"
UTC = dt.UTC
COLUMNS = ["tenant", "event_id", "customer", "subject", "meter", "time", "period", "quantity", "amount",
           "cumulative", "currency", "plan", "line", "dimensions"]  # fmt: skip
ROWS = [
    ["acme", "a1", "org-1", "ann", "api_calls", dt.datetime(2026, 10, 5, 10, tzinfo=UTC), "2026-10", Decimal(10),
     Decimal("1.5"), Decimal(10), "USD", "std", "api_calls", {"region": "eu"}],
    ["acme", "a2", "org-1", "bob", "api_calls", dt.datetime(2026, 10, 5, 11, tzinfo=UTC), "2026-10", Decimal(5),
     Decimal("0.75"), Decimal(15), "USD", "std", "api_calls", {"region": "us"}],
    ["acme", "a3", "org-2", "", "storage", dt.datetime(2026, 11, 2, tzinfo=UTC), "2026-11", Decimal(100),
     Decimal("0.0137"), Decimal(100), "USD", "std", "storage", {}],
    ["bolt", "b1", "b-1", "", "api_calls", dt.datetime(2026, 10, 5, tzinfo=UTC), "2026-10", Decimal(7),
     Decimal("9.99"), Decimal(7), "EUR", "pro", "api_calls", {"region": "eu"}],
]  # fmt: skip


@dataclass
class Front:
    port: int
    store: Path
    keys: KeyRepository
    acme: str  # a read key of acme
    acme_admin: str
    acme_ingest: str
    bolt: str
    settings: Settings


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    root = tmp_path_factory.mktemp("tenant-front")
    store, url = root / "store", f"sqlite:///{root / 'entities.db'}"
    keys = key_store(url)
    tokens = {name: keys.create(tenant, role)[1] for name, tenant, role in [
        ("acme", "acme", "read"), ("acme_admin", "acme", "admin"), ("acme_ingest", "acme", "ingest"),
        ("bolt", "bolt", "read")]}  # fmt: skip
    env = dict(os.environ, METERSTREAM_CLICKHOUSE_HTTP_PASSWORD=PASSWORD, METERSTREAM_DATABASE_URL=url)
    with running_front(store, env) as port:
        writer = clickhouse_connect.get_client(host="127.0.0.1", port=port, username=INTERNAL_USER, password=PASSWORD)
        create_schema(writer, "meterstream")
        writer.insert("meterstream.rated_usage", ROWS, column_names=COLUMNS)
        writer.command("INSERT INTO meterstream.period_closes VALUES ('2026-10', '2026-11-01 00:00:00')")
        writer.command(  # a parsed one of acme's, two unparsed (tenant '') keyed acme/ and acmex/, one of bolt's
            "INSERT INTO meterstream.dead_letters (topic, partition, offset, stage, field, reason, tenant, kafka_key, "
            "raw) VALUES ('usage-events', 0, 1, 'rate', 'meter', 'no price', 'acme', 'acme/org-1', '{}'), "
            "('usage-events', 0, 2, 'parse', '', 'not JSON', '', 'acme/org-1', 'x'), "
            "('usage-events', 0, 3, 'parse', '', 'not JSON', '', 'acmex/o', 'y'), "
            "('usage-events', 0, 4, 'rate', 'meter', 'no price', 'bolt', 'bolt/b-1', '{}')"
        )
        writer.command("CREATE DATABASE IF NOT EXISTS other")
        writer.command("CREATE TABLE other.secrets (tenant String, s String) ENGINE = MergeTree ORDER BY s")
        writer.command("INSERT INTO other.secrets VALUES ('acme', 'mine'), ('bolt', 'theirs')")
        settings = Settings(clickhouse_url=f"chdb://{store}", clickhouse_http_port=port,
                            clickhouse_http_password=PASSWORD)  # fmt: skip
        yield Front(port, store, keys, tokens["acme"], tokens["acme_admin"], tokens["acme_ingest"], tokens["bolt"],
                    settings)  # fmt: skip


def _client(front: Front, user: str, key: str, **kw) -> clickhouse_connect.driver.Client:
    return clickhouse_connect.get_client(host="127.0.0.1", port=front.port, username=user, password=key, **kw)


def _http(port: int, query: str, headers: dict | None = None, method: str = "POST", **params: str):
    url = f"http://127.0.0.1:{port}/?" + urllib.parse.urlencode({"query": query, **params})
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _basic(user: str, key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


def test_each_tenant_reads_its_own_rows_through_clickhouse_connect(front: Front) -> None:
    acme = _client(front, "acme", front.acme)
    # acme: 3 events, 10 + 5 + 100 = 115 units, 1.5 + 0.75 + 0.0137 = 2.2637 USD
    assert acme.query("SELECT count(), sum(quantity), sum(amount) FROM meterstream.rated_usage FINAL").result_rows \
        == [(3, Decimal(115), Decimal("2.2637"))]  # fmt: skip
    assert acme.query("SELECT DISTINCT tenant FROM meterstream.rated_usage").result_rows == [("acme",)]
    # the views are filtered the same way (usage_daily: org-1 on 2026-10-05 = 15 units; org-2 = 100)
    rows = acme.query("SELECT tenant, customer, sum(quantity) FROM meterstream.usage_daily GROUP BY ALL ORDER BY 2")
    assert rows.result_rows == [("acme", "org-1", Decimal(15)), ("acme", "org-2", Decimal(100))]
    # the same SQL unqualified (database meterstream), in a join, IN, a scalar subquery and a WITH
    # org-1's 2 events x its 2 daily rows (subjects ann, bob) + org-2's 1 x 1 = 5; bolt's rows would add more
    assert acme.command("SELECT count() FROM rated_usage AS a JOIN usage_daily AS d USING (tenant, customer)") == 5
    assert acme.command("SELECT count() FROM numbers(1) WHERE 'b1' IN (SELECT event_id FROM rated_usage)") == 0
    assert acme.command("SELECT (SELECT sum(quantity) FROM rated_usage WHERE tenant = 'bolt')") == 0
    assert acme.command("WITH t AS (SELECT * FROM rated_usage) SELECT count() FROM t WHERE tenant != 'acme'") == 0
    # the filter runs before the query's own conditions: throwIf would raise on bolt's row (0 on acme's)
    assert acme.command("SELECT count() FROM rated_usage WHERE throwIf(tenant = 'bolt')") == 0
    bolt = _client(front, "bolt", front.bolt)
    assert bolt.query("SELECT event_id, quantity, amount FROM meterstream.rated_usage").result_rows == [
        ("b1", Decimal(7), Decimal("9.99"))
    ]
    # an admin key reads too; the dead letters, invoices and views list only the tenant's own
    # dead letters: its own, and the unparsed ones its Kafka key names (offsets 1 and 2; not acmex's, not bolt's)
    assert acme.query("SELECT offset FROM meterstream.dead_letters ORDER BY offset").result_rows == [(1,), (2,)]
    assert bolt.query("SELECT offset FROM meterstream.dead_letters").result_rows == [(4,)]
    admin = _client(front, "acme", front.acme_admin)
    assert admin.command("SELECT count() FROM meterstream.usage_by_period") == 2  # (org-1, 2026-10), (org-2, 2026-11)


def test_curl_style_requests_with_basic_auth_headers_and_parameters(front: Front) -> None:
    q = "SELECT customer, sum(quantity) AS q FROM meterstream.rated_usage GROUP BY customer ORDER BY 1 FORMAT JSON"
    status, _, body = _http(front.port, q, headers=_basic("acme", front.acme))
    assert status == 200
    assert json.loads(body)["data"] == [{"customer": "org-1", "q": 15}, {"customer": "org-2", "q": 100}]
    status, _, body = _http(front.port, "SELECT count() FROM meterstream.rated_usage",
                            headers={"X-ClickHouse-User": "bolt", "X-ClickHouse-Key": front.bolt})  # fmt: skip
    assert (status, body) == (200, b"1\n")
    status, _, body = _http(front.port, "SELECT count() FROM meterstream.rated_usage", method="GET",
                            user="acme", password=front.acme)  # fmt: skip
    assert (status, body) == (200, b"3\n")
    # as the README's `curl -u acme:KEY host:port --data-binary 'SQL'`: the statement is the POST body
    req = urllib.request.Request(f"http://127.0.0.1:{front.port}/", method="POST",
                                 data=b"SELECT sum(quantity) FROM meterstream.usage_monthly",
                                 headers={**_basic("acme", front.acme),
                                          "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.read() == b"115\n"  # 10 + 5 + 100


@pytest.mark.parametrize(
    ("user", "key_name"),
    [("acme", "bolt"), ("bolt", "acme"), ("acme", "acme_ingest"), ("acme", None), ("default", None),
     ("acme", "wrong")],
)  # fmt: skip
def test_wrong_keys_are_refused_as_clickhouse_does(front: Front, user: str, key_name: str | None) -> None:
    key = {"wrong": "msk_0000.nope", None: ""}[key_name] if key_name in ("wrong", None) else getattr(front, key_name)
    status, headers, body = _http(front.port, "SELECT 1", headers=_basic(user, key))
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "516"), body
    assert b"(AUTHENTICATION_FAILED)" in body
    with pytest.raises(DatabaseError) as err:
        _client(front, user, key)
    assert err.value.code == 516


def test_a_revoked_key_stops_working_within_seconds(front: Front) -> None:
    info, token = front.keys.create("acme", "read")
    assert _http(front.port, "SELECT 1", headers=_basic("acme", token))[0] == 200
    assert front.keys.revoke(info.key_id)
    deadline = time.monotonic() + 10
    while _http(front.port, "SELECT 1", headers=_basic("acme", token))[0] == 200:
        assert time.monotonic() < deadline, "the revoked key still works after 10 s"
        time.sleep(0.5)
    assert _http(front.port, "SELECT 1", headers=_basic("acme", token))[1]["X-ClickHouse-Exception-Code"] == "516"


@pytest.mark.parametrize(
    ("sql", "code", "why"),
    [
        ("SELECT * FROM other.secrets", 497, b"SELECT ON other.secrets"),
        ("SELECT * FROM meterstream.period_closes", 497, b"SELECT ON meterstream.period_closes"),
        ("SELECT * FROM period_closes", 497, b"SELECT ON meterstream.period_closes"),
        ("SELECT query FROM system.processes", 497, b"SELECT ON system.processes"),
        ("SELECT sum(rows) FROM system.parts", 497, b"SELECT ON system.parts"),
        ("SELECT query FROM system.query_log", 497, b"SELECT ON system.query_log"),
        ("SELECT * FROM information_schema.tables", 497, b"information_schema.tables"),
        ("SELECT count() FROM rated_usage UNION ALL SELECT count() FROM other.secrets", 497, b"other.secrets"),
        ("SELECT count() FROM rated_usage WHERE customer IN other.secrets", 497, b"other.secrets"),
        ("SELECT count() FROM merge('meterstream', '^rated_usage$')", 497, b"table function merge()"),
        ("SELECT * FROM mergeTreeIndex('meterstream', 'rated_usage')", 497, b"table function mergeTreeIndex()"),
        ("SELECT * FROM remote('127.0.0.1', meterstream.rated_usage)", 164, b"function remote()"),
        ("SELECT * FROM file('/etc/hostname', 'LineAsString')", 164, b"function file()"),
        ("SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'x UInt8')", 164, b"function url()"),
        ("SELECT joinGet('other.secrets', 's', 'acme')", 497, b"function joinGet()"),
        ("SELECT dictGet('d', 'a', 1)", 497, b"function dictGet()"),
        ("SELECT count() FROM rated_usage SETTINGS additional_table_filters = {'meterstream.rated_usage': '1'}",
         497, b"SETTINGS clauses are not allowed"),
        ("SELECT * FROM (SELECT count() FROM rated_usage SETTINGS additional_table_filters = {'x': '1'})",
         497, b"SETTINGS clauses are not allowed"),
        ("SET additional_table_filters = {'meterstream.rated_usage': '1'}", 497, b"SET and SETTINGS"),
        ("SET readonly = 0", 497, b"SET and SETTINGS"),
        ("EXPLAIN ESTIMATE SELECT * FROM rated_usage", 497, b"EXPLAIN is not allowed"),
        ("USE other", 497, b"database meterstream only"),
        ("INSERT INTO meterstream.rated_usage (tenant, event_id) VALUES ('bolt', 'x')", 164, b"INSERT is not a read"),
        ("SELECT 1 INTO OUTFILE '/tmp/meterstream-tenant-outfile.txt'", 164, b"INTO OUTFILE"),
        ("SELECT 1 AS `x\ny (children 1)\n   Function file`", 497, b"not well formed"),
    ],
)  # fmt: skip
def test_escapes_are_refused_with_clickhouse_errors(front: Front, sql: str, code: int, why: bytes) -> None:
    status, headers, body = _http(front.port, sql, headers=_basic("acme", front.acme))
    assert headers["X-ClickHouse-Exception-Code"] == str(code), body
    assert status in (403, 500) and why in body, body
    assert body.startswith(f"Code: {code}. DB::Exception: ".encode())
    with pytest.raises(DatabaseError):
        _client(front, "acme", front.acme).command(sql)
    assert not Path("/tmp/meterstream-tenant-outfile.txt").exists()


def test_pinned_settings_parameters_and_other_databases_are_refused(front: Front) -> None:
    for name in ("additional_table_filters", "dialect", "use_query_cache", "allow_introspection_functions",
                 "query_cache_share_between_users"):  # fmt: skip
        status, headers, body = _http(front.port, "SELECT count() FROM rated_usage", headers=_basic("acme", front.acme),
                                      **{name: "1"})  # fmt: skip
        assert headers["X-ClickHouse-Exception-Code"] == "452", (name, body)
        assert f"Setting {name} should not be changed".encode() in body
    # other settings may change, as for a readonly=2 user on a server
    status, _, body = _http(front.port, "SELECT count() FROM rated_usage", headers=_basic("acme", front.acme),
                            max_threads="1", max_execution_time="5")  # fmt: skip
    assert (status, body) == (200, b"3\n")
    status, headers, body = _http(front.port, "SELECT 1", headers=_basic("acme", front.acme), database="other")
    assert headers["X-ClickHouse-Exception-Code"] == "497"
    # an Identifier query parameter naming a forbidden table is checked after substitution
    status, headers, body = _http(front.port, "SELECT * FROM {t:Identifier}", headers=_basic("acme", front.acme),
                                  param_t="system.processes")  # fmt: skip
    assert headers["X-ClickHouse-Exception-Code"] == "497" and b"system.processes" in body


def test_the_catalogue_lists_the_tenant_tables_only(front: Front) -> None:
    acme = _client(front, "acme", front.acme)
    assert acme.query("SHOW DATABASES").result_rows == [("meterstream",)]
    tables = {r[0] for r in acme.query("SHOW TABLES FROM meterstream").result_rows}
    assert {"rated_usage", "usage_daily", "usage_monthly", "dead_letters", "invoices"} <= tables
    assert "period_closes" not in tables
    assert acme.query("SELECT DISTINCT database FROM system.tables").result_rows == [("meterstream",)]
    assert acme.command("SELECT count() FROM system.columns WHERE table = 'secrets'") == 0
    columns = [r[0] for r in acme.query("DESCRIBE TABLE meterstream.rated_usage").result_rows]
    assert columns[:3] == ["tenant", "id", "event_id"]
    # Grafana's ClickHouse data source and clickhouse-connect read these on connect or in their query builders
    assert acme.command("SELECT count() > 100 FROM system.functions") in (1, True)
    assert acme.query("SELECT version(), timezone()").result_rows


def test_a_session_belongs_to_its_tenant(front: Front) -> None:
    acme = _client(front, "acme", front.acme, session_id="shared-session-id")
    bolt = _client(front, "bolt", front.bolt, session_id="shared-session-id")
    assert acme.command("SELECT count() FROM rated_usage") == 3
    assert bolt.command("SELECT count() FROM rated_usage") == 1
    assert acme.command("SELECT count() FROM rated_usage") == 3


def test_the_internal_user_still_reads_every_tenant_and_writes(front: Front) -> None:
    reader = front_client(front.settings)  # what `meterstream query` and the API use
    assert reader is not None
    assert reader.query("SELECT tenant, count() FROM meterstream.rated_usage GROUP BY tenant ORDER BY tenant"
                        ).result_rows == [("acme", 3), ("bolt", 1)]  # fmt: skip
    with pytest.raises(DatabaseError):  # read-only, and no file access
        reader.command("SELECT * FROM file('/etc/hostname', 'LineAsString')")
    with pytest.raises(DatabaseError):
        reader.command("CREATE TABLE meterstream.nope (x UInt8) ENGINE = Memory")
    writer = front_client(front.settings, writer=True)
    writer.command("CREATE TABLE IF NOT EXISTS other.scratch (x UInt8) ENGINE = Memory")
    writer.command("INSERT INTO other.scratch VALUES (1)")
    assert reader.command("SELECT count() FROM other.scratch") == 1
