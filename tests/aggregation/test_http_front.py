"""The ClickHouse HTTP front over an embedded store, driven by clickhouse-connect and by raw HTTP (urllib).

The front runs in a subprocess (`python -m meterstream.aggregation.http_front`) over a store in a tmp dir:
chdb allows one store path per process and this test process may hold the session's `chdb_client`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from front_process import running_front

from meterstream.aggregation.http_front import INTERNAL_USER, STORE_HEADER, front_answers
from meterstream.schemas.settings import Settings

PASSWORD = "s3cret-for-tests"


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    store = tmp_path_factory.mktemp("front-store")
    env = dict(os.environ, METERSTREAM_CLICKHOUSE_HTTP_PASSWORD=PASSWORD)
    with running_front(store, env) as port:
        writer = clickhouse_connect.get_client(host="127.0.0.1", port=port, username=INTERNAL_USER, password=PASSWORD)
        writer.command("CREATE DATABASE IF NOT EXISTS shop")
        writer.command(
            "CREATE TABLE shop.sales (id UInt64, item String, amount Decimal(18, 6), at DateTime64(3, 'UTC'))"
            " ENGINE = ReplacingMergeTree ORDER BY id"
        )
        utc = dt.UTC
        writer.insert(  # Native, lz4-compressed body, the statement in the body's first line
            "shop.sales",
            [
                [1, "tea", Decimal("1.5"), dt.datetime(2026, 1, 1, tzinfo=utc)],
                [2, "cake", Decimal("2.25"), dt.datetime(2026, 1, 2, tzinfo=utc)],
            ],
            column_names=["id", "item", "amount", "at"],
        )
        writer.raw_insert(  # JSONEachRow text body, the statement in the `query` parameter
            "shop.sales", ["id", "item", "amount", "at"],
            '{"id": 3, "item": "jam", "amount": "3", "at": "2026-01-03 00:00:00"}\n', fmt="JSONEachRow",
        )  # fmt: skip
        yield port, store


def _reader(port: int, **kw) -> clickhouse_connect.driver.Client:
    """The internal user asking for readonly=2 (what `front_client` gives `meterstream query` and the API);
    with `username`: that user as it asks. Tenant readers: test_http_front_tenants.py."""
    if "username" not in kw:
        kw = {"username": INTERNAL_USER, "password": PASSWORD, "settings": {"readonly": 2}, **kw}
    return clickhouse_connect.get_client(host="127.0.0.1", port=port, **kw)


READER = {"Authorization": "Basic " + base64.b64encode(f"{INTERNAL_USER}:{PASSWORD}".encode()).decode()}


def _http(port: int, query: str, method: str = "GET", headers: dict | None = None, **params: str):
    if headers is None:  # the internal user, read-only
        headers, params = READER, {"readonly": "2", **params}
    url = f"http://127.0.0.1:{port}/?" + urllib.parse.urlencode({"query": query, **params})
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_connect_and_read_what_the_internal_user_wrote(front) -> None:
    port, _ = front
    import chdb

    client = _reader(port)
    assert client.server_version == chdb.engine_version
    rows = client.query("SELECT id, item, amount, toString(at) FROM shop.sales ORDER BY id").result_rows
    assert rows == [
        (1, "tea", Decimal("1.5"), "2026-01-01 00:00:00.000"),
        (2, "cake", Decimal("2.25"), "2026-01-02 00:00:00.000"),
        (3, "jam", Decimal("3"), "2026-01-03 00:00:00.000"),
    ]
    assert client.command("SELECT sum(amount) FROM shop.sales") == "6.75"  # 1.5 + 2.25 + 3


def test_parameters_settings_database_and_arrow(front) -> None:
    port, _ = front
    client = _reader(port, database="shop")
    assert client.query("SELECT sum(amount) FROM sales WHERE id >= {m:UInt64}", parameters={"m": 2}).result_rows == [
        (Decimal("5.25"),)
    ]
    tricky = "it's a \\ back\tslash\nand 'quotes'"
    assert client.query("SELECT {s:String}", parameters={"s": tricky}).result_rows == [(tricky,)]
    # the API's FINAL reads send this setting with every query: readers may change settings
    final = {"do_not_merge_across_partitions_select_final": 1, "max_threads": 1}
    assert client.query("SELECT count() FROM sales FINAL", settings=final).result_rows == [(3,)]
    table = client.query_arrow("SELECT id, item FROM sales WHERE id < 3 ORDER BY id")
    assert table.column("id").to_pylist() == [1, 2]
    assert table.column("item").to_pylist() == ["tea", "cake"]
    # large parameters travel as multipart form fields
    form = _reader(port, form_encode_query_params=True)
    assert form.query("SELECT {a:UInt32} * 2", parameters={"a": 21}).result_rows == [(42,)]
    # uncompressed and gzip transport work too
    for compress in (False, "gzip"):
        assert _reader(port, compress=compress).command("SELECT count() FROM shop.sales") == 3


def test_errors_as_clickhouse_sends_them(front) -> None:
    port, _ = front
    with pytest.raises(DatabaseError) as err:
        _reader(port).query("SELECT nosuch FROM shop.sales")
    assert err.value.code == 47  # UNKNOWN_IDENTIFIER
    status, headers, body = _http(port, "SELECT nosuch FROM shop.sales")
    assert status == 404  # ClickHouse's status for UNKNOWN_IDENTIFIER
    assert headers["X-ClickHouse-Exception-Code"] == "47"
    assert body.startswith(b"Code: 47. DB::Exception: ") and b"(UNKNOWN_IDENTIFIER)" in body
    status, headers, body = _http(port, "SELEC 1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (400, "62")  # SYNTAX_ERROR


def test_raw_http_json_and_ping(front) -> None:
    port, store = front
    status, headers, body = _http(port, "SELECT 1 AS x, 'a' AS y FORMAT JSON")
    assert status == 200 and headers["X-ClickHouse-Format"] == "JSON"
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["data"] == [{"x": 1, "y": "a"}]
    status, headers, body = _http(port, "SELECT 40 + 2")  # default format TabSeparated
    assert (status, body) == (200, b"42\n")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as resp:  # no credentials needed
        assert resp.read() == b"Ok.\n"
        assert resp.headers[STORE_HEADER] == os.path.realpath(store)


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("INSERT INTO shop.sales (id, item, amount, at) VALUES (9, 'x', 1, now())", b"INSERT is not a read"),
        ("DROP TABLE shop.sales", b"DROP is not a read"),
        ("ALTER TABLE shop.sales DELETE WHERE 1", b"ALTER is not a read"),
        ("CREATE TABLE shop.other (x UInt8) ENGINE = Memory", b"CREATE is not a read"),
        ("KILL QUERY WHERE 1", b"KILL is not a read"),
        ("SELECT * FROM file('/etc/hostname', 'LineAsString')", b"function file()"),
        ("SELECT `fil\\x65`('/etc/hostname')", b"function file()"),  # an escaped name is still file
        ("SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'x UInt8')", b"function url()"),
        ("SELECT 1 INTO OUTFILE '/tmp/meterstream-front-outfile.txt'", b"INTO OUTFILE"),
        ("SELECT 1; DROP TABLE shop.sales", b"Multi-statements are not allowed"),
    ],
)
def test_readers_cannot_write_or_reach_outside(front, sql: str, why: bytes) -> None:
    port, _ = front
    with pytest.raises(DatabaseError):
        _reader(port).command(sql)
    status, _headers, body = _http(port, sql, method="POST")
    assert status in (400, 500) and why in body, body
    assert _reader(port).command("SELECT count() FROM shop.sales") == 3
    assert not Path("/tmp/meterstream-front-outfile.txt").exists()


def test_readonly_engine_level_and_credentials(front) -> None:
    port, _ = front
    auth = {"Authorization": "Basic " + base64.b64encode(f"{INTERNAL_USER}:{PASSWORD}".encode()).decode()}
    # GET is read-only even for the internal user (as on a server): ClickHouse itself refuses
    status, headers, _body = _http(port, "CREATE DATABASE nope", headers=auth)
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "164")
    # readonly=1 asked by a reader: no settings changes either
    status, headers, _ = _http(port, "SELECT 1 SETTINGS max_threads = 1", readonly="1")
    assert headers["X-ClickHouse-Exception-Code"] == "164"
    with pytest.raises(DatabaseError) as err:
        clickhouse_connect.get_client(host="127.0.0.1", port=port, username=INTERNAL_USER, password="wrong")
    assert err.value.code == 516
    status, headers, _ = _http(port, "SELECT 1", headers={"X-ClickHouse-User": INTERNAL_USER, "X-ClickHouse-Key": "x"})
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "516")


def test_sessions_keep_their_own_state(front) -> None:
    port, _ = front
    one = _reader(port, session_id="front-test-one")
    two = _reader(port, session_id="front-test-two")
    one.command("SET max_threads = 3")
    assert one.command("SELECT getSetting('max_threads')") == 3
    assert two.command("SELECT getSetting('max_threads')") != 3
    _status, headers, _ = _http(port, "SELECT 1", session_id="never-opened", session_check="1")
    assert headers["X-ClickHouse-Exception-Code"] == "372"  # SESSION_NOT_FOUND


def test_front_answers_only_for_its_own_store(front, tmp_path: Path) -> None:
    port, store = front
    assert front_answers(Settings(clickhouse_url=f"chdb://{store}", clickhouse_http_port=port))
    assert not front_answers(Settings(clickhouse_url=f"chdb://{tmp_path}", clickhouse_http_port=port))
    assert not front_answers(Settings(clickhouse_url=f"chdb://{store}", clickhouse_http_port=0))


def test_request_body_codecs_for_inserts(front) -> None:
    port, _ = front
    writer = _reader(port, username=INTERNAL_USER, password=PASSWORD)
    writer.command("CREATE TABLE IF NOT EXISTS shop.codec (codec String, n UInt32) ENGINE = MergeTree ORDER BY codec")
    codecs = [False, "gzip", "zstd", "lz4"]
    for i, codec in enumerate(codecs):
        client = _reader(port, username=INTERNAL_USER, password=PASSWORD, compress=codec)
        client.insert("shop.codec", [[str(codec), i + 1]], column_names=["codec", "n"])
    rows = _reader(port).query("SELECT codec, n FROM shop.codec ORDER BY n").result_rows
    assert rows == [("False", 1), ("gzip", 2), ("zstd", 3), ("lz4", 4)]


def test_concurrent_readers_while_the_owner_writes(front) -> None:
    """As in the sink: inserts into the store while readers query it through the front, all in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    port, _ = front
    writer = _reader(port, username=INTERNAL_USER, password=PASSWORD)
    writer.command("CREATE TABLE IF NOT EXISTS shop.ticks (n UInt64) ENGINE = MergeTree ORDER BY n")

    def write() -> int:
        w = _reader(port, username=INTERNAL_USER, password=PASSWORD)
        for block in range(20):
            w.insert("shop.ticks", [[block * 100 + i] for i in range(100)], column_names=["n"])
        return 20 * 100

    shared = _reader(port, autogenerate_session_id=False)  # as api/queries.py: one client, many threads

    def read(_: int) -> int:
        seen = [shared.command("SELECT count() FROM shop.ticks") for _ in range(20)]
        assert seen == sorted(seen)  # counts never go back
        return seen[-1]

    with ThreadPoolExecutor(5) as pool:
        written = pool.submit(write)
        reads = list(pool.map(read, range(4)))
        assert written.result() == 2000
    assert all(0 <= n <= 2000 for n in reads)
    assert _reader(port).command("SELECT count(), sum(n) FROM shop.ticks") == ["2000", "1999000"]  # 0 + ... + 1999
