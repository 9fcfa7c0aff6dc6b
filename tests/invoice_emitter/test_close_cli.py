"""`meterstream close` (deploy/cli.py): on a fresh machine it creates the entity store (the home of the invoice
records) and closes from the catalog file; a customer that cannot be invoiced is printed with the reason, the
others are written, finalized and numbered, and the exit status is 1.

Prices from tests/data/catalog.yaml, plan `basic`: api_calls 0-10 free, 10-100 at 0.50 (USD).
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS
from meterstream.deploy import cli
from meterstream.entities import invoices
from meterstream.invoice_emitter.store_plans import StoreView
from meterstream.schemas.settings import Settings

CATALOG = Path(__file__).resolve().parents[1] / "data" / "catalog.yaml"


def row(customer: str, plan: str, quantity: str) -> list:
    return ["t1", uuid.uuid4().hex, customer, "", "api_calls", datetime(2026, 10, 15, tzinfo=UTC), "2026-10",
            Decimal(quantity), Decimal(0), Decimal(0), "USD", plan, "api_calls", {}, "", 0, 0]  # fmt: skip


def test_close_on_a_fresh_machine_reports_the_customer_it_cannot_invoice_and_exits_1(
    chdb_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"c_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    chdb_client.insert(f"{db}.rated_usage", [row("c1", "basic", "30"), row("c2", "gone", "5")],
                       column_names=list(RATED_COLUMNS))  # fmt: skip
    settings = Settings(home=tmp_path / "home", catalog=CATALOG, clickhouse_database=db, database_url=None)
    assert not (tmp_path / "home" / "meterstream.db").exists()  # a fresh machine: no store yet
    monkeypatch.setattr("meterstream.aggregation.client.connect", lambda _settings: chdb_client)
    out = tmp_path / "inv"
    args = argparse.Namespace(period="2026-10", out=str(out), no_publish=True, force=True, issue_date=None, render="")
    status = cli._close(args, settings)
    assert status == 1
    err = capsys.readouterr().err
    assert "error: t1/c2 not invoiced: plan: usage of t1/c2 in 2026-10 was rated with plan 'gone'" in err
    doc = orjson.loads((out / "2026-10" / "t1" / "c1.json").read_bytes())
    assert doc["total"] == "10.00"  # (30 - 10) x 0.50
    assert not (out / "2026-10" / "t1" / "c2.json").exists()
    # the close created the store and finalized the invoice in it: the demo issuer's first number of 2026
    assert (doc["status"], doc["number"], doc["issue_date"], doc["due_date"]) == (
        "finalized",
        "DEMO-2026-000001",
        "2026-11-01",
        "2026-11-01",
    )  # the day after October ends (UTC: a catalog-file customer), no payment terms
    assert doc["issuer"]["name"] == "Meterstream Demo GmbH" and doc["buyer"] == {**doc["buyer"], "name": "c1"}
    record = invoices.get(StoreView.open(settings).sf, "t1", doc["id"])
    assert (record.status, record.number, record.total) == ("finalized", "DEMO-2026-000001", Decimal("10.00"))


def test_close_writes_through_the_sinks_clickhouse_front_while_it_owns_the_embedded_store(tmp_path: Path) -> None:
    """While the pipeline runs, the sink holds the embedded store (one process per path) and serves its HTTP
    front: `meterstream close` reads and writes through it as the internal user, whose password the sink keeps
    in the data directory (mode 0600). Here the front runs alone in a subprocess over the store, as the sink
    would; the close runs in another one. t1/c1: 30 calls on plan basic = (30 - 10) x 0.50 = 10.00."""
    import os
    import stat
    import subprocess
    import sys
    import time
    import urllib.request

    from meterstream.aggregation.http_front import WRITER_SECRET_FILE, front_client, writer_password
    from meterstream.deploy.ports import free_port

    home, store, port = tmp_path / "home", tmp_path / "store", free_port()
    settings = Settings(home=home, catalog=CATALOG, clickhouse_url=f"chdb://{store}", clickhouse_http_port=port,
                        database_url=None)  # fmt: skip
    assert writer_password(settings) is None  # nothing made yet
    secret = writer_password(settings, create=True)  # what the sink does when it starts its front
    assert secret and writer_password(settings) == secret  # kept: the same for every tool of this home
    assert stat.S_IMODE((home / WRITER_SECRET_FILE).stat().st_mode) == 0o600
    store.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    front = subprocess.Popen(
        [sys.executable, "-m", "meterstream.aggregation.http_front", "--store", str(store), "--port", str(port)],
        env={**env, "METERSTREAM_CLICKHOUSE_HTTP_PASSWORD": secret}, stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1).read()
                break
            except OSError:
                assert front.poll() is None and time.monotonic() < deadline, "front did not answer"
                time.sleep(0.2)
        writer = front_client(settings, writer=True)
        assert writer is not None
        create_schema(writer, "meterstream")
        writer.insert("meterstream.rated_usage", [row("c1", "basic", "30")], column_names=list(RATED_COLUMNS))
        out = tmp_path / "inv"
        done = subprocess.run(
            [sys.executable, "-m", "meterstream.deploy.cli", "close", "--period", "2026-10", "--out", str(out),
             "--no-publish", "--force"],  # no Kafka here: the close guards cannot check the pipeline's lag
            env={**env, "METERSTREAM_HOME": str(home), "METERSTREAM_CATALOG": str(CATALOG),
                 "METERSTREAM_CLICKHOUSE_URL": f"chdb://{store}", "METERSTREAM_CLICKHOUSE_HTTP_PORT": str(port)},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert orjson.loads((out / "2026-10" / "t1" / "c1.json").read_bytes())["total"] == "10.00"
        # the close recorded the invoice in the store the front serves
        reader = front_client(settings)
        assert reader.query("SELECT count() FROM meterstream.invoices").result_rows == [(1,)]
    finally:
        front.terminate()
        front.wait(30)


def test_close_of_one_customer_from_the_cli(
    chdb_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`meterstream close --period 2026-10 --customer c1`: only c1 is finalized (30 calls: 10.00); its tenant is
    found from its usage; an id that two tenants use needs --tenant."""
    from meterstream.invoice_emitter.ledger import closed_periods

    db = f"c_{uuid.uuid4().hex[:10]}"
    create_schema(chdb_client, db)
    twin = row("c3", "bulk", "5")
    twin[0] = "t2"
    rows = [row("c1", "basic", "30"), row("c2", "basic", "40"), row("c3", "basic", "5"), twin]
    chdb_client.insert(f"{db}.rated_usage", rows, column_names=list(RATED_COLUMNS))
    settings = Settings(home=tmp_path / "home", catalog=CATALOG, clickhouse_database=db, database_url=None)
    monkeypatch.setattr("meterstream.aggregation.client.connect", lambda _settings: chdb_client)
    out = tmp_path / "inv"

    def close(customer: str, tenant: str | None = None) -> int:
        return cli._close(
            argparse.Namespace(
                period="2026-10",
                out=str(out),
                no_publish=True,
                force=True,
                issue_date=None,
                render="",
                customer=customer,
                tenant=tenant,
            ),
            settings,
        )

    assert close("c1") == 0
    assert sorted(p.name for p in (out / "2026-10" / "t1").iterdir()) == ["c1.json"]
    doc = orjson.loads((out / "2026-10" / "t1" / "c1.json").read_bytes())
    assert (doc["total"], doc["number"]) == ("10.00", "DEMO-2026-000001")
    assert closed_periods(chdb_client, db) == []
    with pytest.raises(RuntimeError, match="tenant: customer 'c3' exists in tenants t1, t2; name one with --tenant"):
        close("c3")
    with pytest.raises(RuntimeError, match="customer: no usage and no customer record with the id 'nobody'"):
        close("nobody")
    assert close("c3", "t2") == 0
    assert orjson.loads((out / "2026-10" / "t2" / "c3.json").read_bytes())["number"] == "DEMO-2026-000001"
