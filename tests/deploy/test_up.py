"""`meterstream up` as a user runs it: its own broker, the pipeline, the API, the ClickHouse front; Ctrl-C.

Events go in through the API, come back through the sink's ClickHouse HTTP front (clickhouse-connect, and raw
HTTP with Basic auth as the README's `curl -u` does, running the README's analyst queries per tenant) and
through `meterstream query`; SIGINT stops everything in order, within a bound, and leaves no process.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import pytest

from meterstream.deploy.ports import free_port, free_port_pair


def _last_month_day(now: datetime | None = None) -> str:
    """The 15th of last month (UTC): one day for the whole month, 15 to 47 days ago, so always inside the
    default 92-day event-time window and never in the future (a fixed date falls out of it one day)."""
    first = (now or datetime.now(UTC)).replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m-15")


def test_the_events_day_moves_with_the_date() -> None:
    assert _last_month_day(datetime(2027, 1, 1, 0, 0, tzinfo=UTC)) == "2026-12-15"  # 17 days before
    assert _last_month_day(datetime(2027, 3, 31, 23, 59, tzinfo=UTC)) == "2027-02-15"  # 44 days before
    assert _last_month_day(datetime(2028, 3, 1, tzinfo=UTC)) == "2028-02-15"  # leap year: 15 days before


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose only once reaped; report it as alive
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except FileNotFoundError:
        return False


def _up(tmp_path: Path, **extra: str) -> tuple[subprocess.Popen, Path, dict[str, str], dict[str, int]]:
    """Start `meterstream up` with a fresh home and free ports for everything; wait for its status table."""
    home = tmp_path / "home"
    ports = {
        "METERSTREAM_KAFKA_PORT": free_port_pair(),
        "METERSTREAM_PROCESSOR_METRICS_PORT": free_port(),
        "METERSTREAM_SINK_METRICS_PORT": free_port(),
        "METERSTREAM_CLICKHOUSE_HTTP_PORT": free_port(),
        "api": free_port(),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update({k: str(v) for k, v in ports.items() if k != "api"}, METERSTREAM_HOME=str(home), **extra)
    env.setdefault("METERSTREAM_KAFKA_HEAP", "512m")
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        up = subprocess.Popen(
            [sys.executable, "-m", "meterstream.deploy.cli", "up", "--port", str(ports["api"])],
            env=env, stdout=o, stderr=e, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    deadline = time.monotonic() + 240
    while "meterstream is up" not in out.read_text():
        if up.poll() is not None or time.monotonic() > deadline:
            up.kill()
            pytest.fail(f"up did not come up (exit {up.poll()}):\n{out.read_text()}\n{err.read_text()}")
        time.sleep(0.5)
    return up, err, env, ports


def _stop(up: subprocess.Popen, sig: int, pids: list[int]) -> tuple[int, float]:
    started = time.monotonic()
    up.send_signal(sig)
    try:
        return up.wait(120), time.monotonic() - started
    except subprocess.TimeoutExpired:
        up.kill()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        raise


def _every_address_in_the_table_answers(table: str) -> None:
    """Each address the status table prints is served: the API's paths, the console (its login page), the
    compat APIs (their routes in the OpenAPI document), the processor's and the sink's /metrics and /healthz."""
    rows = {ln.split("  ")[1].strip(): ln for ln in table.splitlines() if ln.startswith("  ")}
    api = rows["API"].split()[1]
    for path in re.findall(r" (/[a-z.]+)", rows["API"]):
        assert urllib.request.urlopen(api + path, timeout=60).status == 200, path
    (console,) = re.findall(r"http://\S+", rows["console"])
    login = urllib.request.urlopen(console, timeout=60)  # redirected to the login page
    assert login.url.endswith("/console/login") and "<form" in login.read().decode()
    paths = json.loads(urllib.request.urlopen(f"{api}/openapi.json", timeout=60).read())["paths"]
    for name in ("OpenMeter API", "Lago API"):
        (base,) = re.findall(r"http://\S+", rows[name])
        prefix = base.removeprefix(api).rstrip("/") + "/"
        assert any(p.startswith(prefix) for p in paths), (name, prefix)
    for name in ("processor", "sink"):
        urls = re.findall(r"http://\S+/(?:metrics|healthz)", rows[name])
        assert len(urls) == 2, rows[name]
        for url in urls:
            assert urllib.request.urlopen(url, timeout=60).status == 200, url


def _post(url: str, body: str, user: str = "", password: str = "") -> bytes:
    """POST `body` as curl's `--data-binary` does, with HTTP Basic auth as `curl -u user:password` sends it."""
    headers = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()} if user else {}
    return urllib.request.urlopen(urllib.request.Request(url, data=body.encode(), headers=headers), timeout=60).read()


README_PYTHON = "SELECT customer, month, sum(amount) FROM meterstream.usage_monthly GROUP BY ALL ORDER BY ALL"
README_CURL = (
    "SELECT customer, rank, amount FROM meterstream.customer_ranking_monthly "
    "WHERE month = toStartOfMonth(today()) AND rank <= 5"
)


def _readme_analyst_queries(cli: list[str], env: dict[str, str], api_port: int, front_port: int, read_key) -> None:  # type: ignore[no-untyped-def]
    """README's two analyst queries (clickhouse-connect and `curl -u`), word for word, as tenant saasco while
    tenant cloudco has usage of a customer with the same name this month: each sees only its own.

    Storage on cloud-standard is 0.000137 USD per GB-hour (deploy/demo_catalog.yaml): saasco org-1 1000 -> 0.137,
    org-2 3000 -> 0.411; cloudco org-1 2000 -> 0.274 (and its last-month api_calls, 0: the first 10,000 free)."""
    now = datetime.now(UTC)
    when = now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def send(tenant: str, events: list[tuple[str, str, str]]) -> None:
        made = subprocess.run([*cli, "keys", "create", "--tenant", tenant, "--role", "ingest"],
                              env=env, capture_output=True, text=True, check=True)  # fmt: skip
        body = [
            {"id": i, "customer": c, "meter": "storage_gb_hours", "quantity": q, "time": when} for i, c, q in events
        ]
        req = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/v1/events", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}",
                     "Content-Type": "application/json"},
        )  # fmt: skip
        reply = json.loads(urllib.request.urlopen(req, timeout=30).read())
        assert [r["status"] for r in reply["results"]] == ["accepted"] * len(events), reply

    send("saasco", [("s-1", "org-1", "1000"), ("s-2", "org-2", "3000")])
    send("cloudco", [("c-1", "org-1", "2000")])
    saasco_key, cloudco_key = read_key("saasco"), read_key("cloudco")
    url = f"http://127.0.0.1:{front_port}/"
    count = "SELECT count() FROM meterstream.rated_usage FINAL WHERE meter = 'storage_gb_hours'"
    deadline = time.monotonic() + 90
    while _post(url, count, "saasco", saasco_key) != b"2\n" or _post(url, count, "cloudco", cloudco_key) != b"1\n":
        assert time.monotonic() < deadline, "storage events not visible"
        time.sleep(0.5)
    month = now.date().replace(day=1)

    ch = clickhouse_connect.get_client(host="127.0.0.1", port=front_port, username="saasco", password=saasco_key)
    assert ch.query(README_PYTHON).result_rows == [
        ("org-1", month, Decimal("0.137")),
        ("org-2", month, Decimal("0.411")),
    ]

    def ranking(tenant: str, key: str) -> list[tuple[str, int, Decimal]]:
        text = _post(url, README_CURL, tenant, key).decode()
        return [(c, int(r), Decimal(a)) for c, r, a in (ln.split("\t") for ln in text.splitlines())]

    assert ranking("saasco", saasco_key) == [("org-2", 1, Decimal("0.411")), ("org-1", 2, Decimal("0.137"))]
    assert ranking("cloudco", cloudco_key) == [("org-1", 1, Decimal("0.274"))]  # the same name, its own amount
    for user, password in (("saasco", cloudco_key), ("", "")):  # another tenant's key; no credentials
        with pytest.raises(urllib.error.HTTPError) as refused:
            _post(url, README_CURL, user, password)
        assert refused.value.code == 403 and b"AUTHENTICATION_FAILED" in refused.value.read()


@pytest.mark.kafka
def test_up_runs_the_whole_system_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    up, err, env, ports = _up(tmp_path)
    api_port = ports["api"]
    pids: list[int] = []
    try:
        table = (tmp_path / "up.out").read_text()
        pids = [int(p) for p in re.findall(r"pid (\d+)", table)]
        assert len(pids) == 3, table  # API, processor, sink
        assert "(started by up)" in table
        pids.append(int((tmp_path / "home" / "kafka" / "broker.pid").read_text()))
        assert f"http://127.0.0.1:{api_port}" in table and str(ports["METERSTREAM_CLICKHOUSE_HTTP_PORT"]) in table
        ready = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{api_port}/readyz", timeout=10).read())
        assert ready["status"] == "ok"
        _every_address_in_the_table_answers(table)

        cli = [sys.executable, "-m", "meterstream.deploy.cli"]
        keys = subprocess.run([*cli, "keys", "create", "--tenant", "cloudco", "--role", "ingest"],
                              env=env, capture_output=True, text=True, check=True)  # fmt: skip
        key = keys.stdout.strip().splitlines()[-1]
        day = _last_month_day()  # inside the default event-time window whatever the date
        events = [
            {"id": "up-1", "customer": "acme", "meter": "api_calls", "quantity": "100", "time": f"{day}T10:00:00Z"},
            {"id": "up-2", "customer": "acme", "meter": "api_calls", "quantity": "250", "time": f"{day}T11:00:00Z"},
            {"id": "up-1", "customer": "acme", "meter": "api_calls", "quantity": "100", "time": f"{day}T10:00:00Z"},
        ]
        req = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/v1/events", data=json.dumps(events).encode(), method="POST",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )  # fmt: skip
        reply = json.loads(urllib.request.urlopen(req, timeout=30).read())
        assert [r["status"] for r in reply["results"]] == ["accepted", "accepted", "duplicate"]

        def read_key(tenant: str) -> str:
            made = subprocess.run([*cli, "keys", "create", "--tenant", tenant, "--role", "read"],
                                  env=env, capture_output=True, text=True, check=True)  # fmt: skip
            return made.stdout.strip().splitlines()[-1]

        # an analyst of tenant cloudco, as the README shows: user = tenant, password = a read key
        port = ports["METERSTREAM_CLICKHOUSE_HTTP_PORT"]
        front = clickhouse_connect.get_client(host="127.0.0.1", port=port, username="cloudco",
                                              password=read_key("cloudco"))  # fmt: skip
        sql = "SELECT count(), sum(quantity), sum(amount) FROM meterstream.rated_usage FINAL"  # its own rows only
        deadline = time.monotonic() + 90
        while (rows := front.query(sql).result_rows)[0][0] < 2:
            assert time.monotonic() < deadline, f"events not visible: {rows}\n{err.read_text()}"
            time.sleep(0.5)
        # 100 + 250 api calls; cloud-standard's first 10,000 calls are free (deploy/demo_catalog.yaml)
        assert rows == [(2, Decimal("350"), Decimal("0"))]
        other = clickhouse_connect.get_client(host="127.0.0.1", port=port, username="other", password=read_key("other"))
        assert other.query(sql).result_rows == [(0, Decimal(0), Decimal(0))]  # cloudco's rows are not its
        query = subprocess.run([*cli, "query", "SELECT count() FROM meterstream.rated_usage FINAL"],
                               env=env, capture_output=True, text=True, check=True)  # fmt: skip
        assert query.stdout.splitlines() == ["count()", "2"]  # through the front: the sink holds the store
        _readme_analyst_queries(cli, env, api_port, port, read_key)
    finally:
        rc, stopped_in = _stop(up, signal.SIGINT, pids)
    log = err.read_text()
    assert rc == 0, log
    assert stopped_in < 60, f"stopping took {stopped_in:.1f}s"
    order = [log.index(f"[up] {name} stopped") for name in ("api", "processor", "sink", "broker")]
    assert order == sorted(order), log
    assert [pid for pid in pids if _alive(pid)] == []


@pytest.mark.kafka
def test_up_reuses_a_running_broker_and_leaves_it_running_on_sigterm(kafka_settings, tmp_path: Path) -> None:
    from meterstream.deploy import kafka_local

    up, err, _, _ = _up(
        tmp_path, METERSTREAM_KAFKA_BOOTSTRAP=kafka_settings.bootstrap, METERSTREAM_TOPIC_PREFIX=f"up-{time.time_ns()}."
    )
    table = (tmp_path / "up.out").read_text()
    pids = [int(p) for p in re.findall(r"pid (\d+)", table)]
    rc, _ = _stop(up, signal.SIGTERM, pids)
    log = err.read_text()
    assert rc == 0, log
    assert f"{kafka_settings.bootstrap} (reused)" in table
    assert "[up] sink stopped" in log and "broker stopped" not in log
    assert [pid for pid in pids if _alive(pid)] == []
    assert kafka_local.answers(kafka_settings.bootstrap)


def test_up_refuses_busy_ports_before_starting_anything(tmp_path: Path) -> None:
    import socket

    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    home = tmp_path / "home"
    env["METERSTREAM_HOME"] = str(home)
    env["METERSTREAM_KAFKA_PORT"] = str(free_port_pair())
    env["METERSTREAM_PROCESSOR_METRICS_PORT"] = str(free_port())
    env["METERSTREAM_SINK_METRICS_PORT"] = str(free_port())
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        env["METERSTREAM_CLICKHOUSE_HTTP_PORT"] = str(held.getsockname()[1])
        up = subprocess.run([sys.executable, "-m", "meterstream.deploy.cli", "up", "--port", str(free_port())],
                            env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert up.returncode == 1
    assert f"127.0.0.1:{env['METERSTREAM_CLICKHOUSE_HTTP_PORT']} (METERSTREAM_CLICKHOUSE_HTTP_PORT)" in up.stderr
    assert not (home / "kafka").exists()  # no broker was started
