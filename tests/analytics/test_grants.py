"""`meterstream clickhouse grants`: the server-mode statements for tenant readers (no server here: the
statements are checked by hand, parsed by ClickHouse's own parser in chdb, and the table lists against the DDL)."""

from __future__ import annotations

import uuid

import pytest

from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.grants import SCHEMA_VIEWS, TENANT_TABLES, key_sha256, script, tenant_statements
from meterstream.aggregation.views import view_names
from meterstream.deploy.cli import main
from meterstream.entities.db import make_engine, session_factory
from meterstream.entities.keys import ApiKey, KeyRepository

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2's SHA-256("abc")


def test_the_statements_for_one_tenant() -> None:
    stmts = tenant_statements("meterstream", "acme", ["abc"])
    assert stmts[0] == (
        f"CREATE USER OR REPLACE `acme` IDENTIFIED WITH sha256_hash BY '{ABC_SHA256}' SETTINGS readonly = 2"
    )
    assert stmts[1] == ("CREATE ROW POLICY OR REPLACE `meterstream_tenant_acme` ON `meterstream`.`rated_usage` "
                        "AS PERMISSIVE FOR SELECT USING tenant = 'acme' TO `acme`")  # fmt: skip
    assert len(stmts) == 1 + len(TENANT_TABLES) + len(TENANT_TABLES) + len(SCHEMA_VIEWS) + len(view_names())
    assert "GRANT SELECT ON `meterstream`.`usage_monthly` TO `acme`" in stmts
    assert (
        "CREATE ROW POLICY OR REPLACE `meterstream_tenant_acme` ON `meterstream`.`dead_letters` AS PERMISSIVE FOR "
        "SELECT USING tenant = 'acme' OR (tenant = '' AND startsWith(kafka_key, 'acme/')) TO `acme`"
    ) in stmts
    assert not any("period_closes" in s for s in stmts)  # operator data, no tenant column: not granted


def test_names_and_values_are_quoted_and_every_key_is_a_password() -> None:
    stmts = tenant_statements("meterstream", "o'brien`s", ["abc", "key-2"])
    assert stmts[0].startswith("CREATE USER OR REPLACE `o'brien\\`s` IDENTIFIED WITH "
                               f"sha256_hash BY '{ABC_SHA256}', sha256_hash BY '{key_sha256('key-2')}'")  # fmt: skip
    assert "USING tenant = 'o\\'brien`s' TO `o'brien\\`s`" in stmts[1]
    with pytest.raises(ValueError, match="keys"):
        tenant_statements("meterstream", "acme", [])


def test_clickhouse_parses_every_statement(chdb_client) -> None:
    text = script("meterstream", {"acme": ["abc"], "o'brien": ["k"]}, service_user="meterstream_sink")
    stmts = [line.removesuffix(";") for line in text.splitlines() if not line.startswith("--")]
    assert stmts[0] == ("CREATE ROW POLICY OR REPLACE `meterstream_service` ON `meterstream`.`rated_usage` AS "
                        "PERMISSIVE FOR SELECT USING 1 TO `meterstream_sink`")  # fmt: skip
    for stmt in stmts:  # a syntax error raises
        chdb_client.query("SELECT formatQuerySingleLine({q:String})", parameters={"q": stmt})


def test_the_table_lists_match_the_ddl(chdb_client) -> None:
    db = f"grants_{uuid.uuid4().hex[:8]}"
    create_schema(chdb_client, db)
    rows = chdb_client.query(
        "SELECT t.name, t.engine FROM system.tables AS t WHERE t.database = {db:String} AND t.name IN "
        "(SELECT table FROM system.columns WHERE database = {db:String} AND name = 'tenant')",
        parameters={"db": db},
    ).result_rows
    assert {n for n, e in rows if e != "View"} == set(TENANT_TABLES)
    assert {n for n, e in rows if e == "View"} == set(SCHEMA_VIEWS) | set(view_names())


def test_the_cli_checks_each_key_against_the_store(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'entities.db'}"
    engine = make_engine(url=url)
    ApiKey.__table__.create(engine)
    keys = KeyRepository(session_factory(engine))
    _, read = keys.create("acme", "read")
    _, ingest = keys.create("acme", "ingest")
    revoked_info, revoked = keys.create("bolt", "read")
    keys.revoke(revoked_info.key_id)
    monkeypatch.setenv("METERSTREAM_DATABASE_URL", url)
    assert main(["clickhouse", "grants", "--key", read]) == 0
    out = capsys.readouterr().out
    assert f"sha256_hash BY '{key_sha256(read)}'" in out and "-- tenant acme: 1 key(s)" in out
    assert read not in out  # the key itself is never printed
    assert main(["clickhouse", "grants", "--key", read, "--key", ingest]) == 1
    assert "--key #2: role ingest cannot read" in capsys.readouterr().err
    assert main(["clickhouse", "grants", "--key", revoked]) == 1
    assert "--key #1: unknown or revoked" in capsys.readouterr().err
