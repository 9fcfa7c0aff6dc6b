"""The CLI's output (issue #17 item 5): one line for a command-line mistake, `--json` where a table is printed,
plain text with no escape codes when piped, tables that fit the terminal, progress only on a terminal, and
`dlq list --tenant` finding the parse errors whose Kafka key names the tenant. Each failed before the typer CLI."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from meterstream.deploy.cli import commands, main
from meterstream.deploy.cli_common import progress, table
from meterstream.deploy.cli_dlq import print_table
from meterstream.ingest.dlq import DeadLetterRecord, letters

CLI = [sys.executable, "-m", "meterstream.deploy.cli"]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def home(clean_env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("METERSTREAM_HOME", str(tmp_path))
    monkeypatch.setenv("METERSTREAM_DATABASE_URL", f"sqlite:///{tmp_path / 'entities.db'}")
    return tmp_path


def letter(position: int, stage: str, key: str | None, tenant: str | None) -> DeadLetterRecord:
    return DeadLetterRecord(stage=stage, field="body" if stage == "parse" else "meter", reason="bad", topic="usage",
                            partition=0, offset=position, key=key, raw="{", event_id=None, tenant=tenant,
                            dlq_partition=0, dlq_offset=position)  # fmt: skip


def test_dlq_list_tenant_finds_parse_errors_by_their_kafka_key(capsys: pytest.CaptureFixture[str]) -> None:
    scanned = [(0, i, r) for i, r in enumerate([
        letter(0, "parse", "acme/c1", None),  # not JSON: no tenant field, but the producer keyed it acme/c1
        letter(1, "rate", "acme/c2", "acme"),
        letter(2, "parse", "beta/c1", None),
        letter(3, "parse", None, None),  # no key: no tenant to tell
    ])]  # fmt: skip
    assert [r.position for r in letters(scanned, tenant="acme")] == ["0:0", "0:1"]
    assert [r.position for r in letters(scanned, tenant="beta")] == ["0:2"]
    print_table(letters(scanned))
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["POSITION", "STAGE", "FIELD", "REASON", "TENANT", "EVENT", "ID"]
    assert [(r[0], r[-2]) for r in rows[1:]] == [("0:0", "acme"), ("0:1", "acme"), ("0:2", "beta"), ("0:3", "-")]


def test_dlq_stage_api_is_a_stage_to_filter_by() -> None:
    """The API dead-letters refused events with stage `api` (docs/openmeter.md: `dlq list --stage api`); the
    argparse CLI refused that value."""
    found = dict(commands())
    for path in (("dlq", "list"), ("dlq", "replay")):
        ctx = found[path].make_context(" ".join(path), ["--stage", "api"])
        assert ctx.params["stage"] == "api"


def test_a_command_line_mistake_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, names in ((["close"], "Missing option '--period'"), (["nope"], "No such command 'nope'"),
                        (["keys", "create", "--tenant", "a", "--role", "root"], "'root' is not one of"),
                        (["kafka", "start", "--brokers", "12"], "--brokers")):  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2, argv
        assert err.count("\n") == 1 and names in err and err.startswith("meterstream "), (argv, err)
        assert "Traceback" not in err and "Usage" not in err


def test_keys_list_json(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for tenant, role, name in (("acme", "read", "analyst"), ("acme", "admin", None), ("beta", "ingest", "pump")):
        argv = ["keys", "create", "--tenant", tenant, "--role", role, *(["--name", name] if name else [])]
        assert main(argv) == 0
    capsys.readouterr()
    assert main(["keys", "list", "--tenant", "acme", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted((k["tenant"], k["role"], k["name"], k["revoked_at"]) for k in listed) == [
        ("acme", "admin", "", ""), ("acme", "read", "analyst", "")]  # fmt: skip
    assert set(listed[0]) == {"key_id", "tenant", "role", "name", "created_at", "revoked_at"}


def test_lists_piped_are_plain_lines_without_escape_codes(home: Path) -> None:
    """Before: `customers list` drew a rich table with box characters into the pipe."""
    env = {**os.environ, "TERM": "xterm-256color", "FORCE_COLOR": "", "COLUMNS": "200"}
    env.pop("FORCE_COLOR")
    done = subprocess.run([*CLI, "customers", "list", "--tenant", "acme"], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "external_id\tname\tcurrency\tcountry\ttimezone\temail\tversion\n"
    assert "\x1b" not in done.stdout + done.stderr
    done = subprocess.run([*CLI, "plans", "list", "--tenant", "acme", "--json"], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert (done.returncode, json.loads(done.stdout)) == (0, [])


def test_a_table_on_a_terminal_fits_its_width(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Tty()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setenv("COLUMNS", "50")
    long = "a-rather-long-reason-that-cannot-fit-in-fifty-columns-at-all"
    table("t", ["id", "reason"], [["1", long]])
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in out.getvalue().splitlines()]  # the title's italics
    assert lines and max(len(line) for line in lines) <= 50, lines
    assert "".join(line.replace("│", "").replace(" ", "") for line in lines).find(long) >= 0  # folded, not cut


def test_progress_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    with progress("replaying", 10) as advance:
        advance(10, 10)
    assert piped.getvalue() == ""
    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    with progress("replaying", 10) as advance:
        advance(10, 10)
    assert "replaying" in tty.getvalue() and "10/10" in tty.getvalue()


def test_each_group_registers_the_names_main_builds_it_for() -> None:
    """`main` builds only the group that registers the command typed (fast start): the table must be right."""
    import typer

    from meterstream.deploy.cli import GROUPS, build_app

    every = set(typer.main.get_command(build_app()).commands)
    assert every == {name for names in GROUPS.values() for name in names}
    for names in GROUPS.values():
        if names:
            assert set(typer.main.get_command(build_app(names[0])).commands) == set(names), names


def test_close_counts_its_invoices_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The close's running count ("\\r[close] ... invoices") went into piped logs too."""
    from types import SimpleNamespace

    from meterstream.schemas.settings import Settings

    seen: list[bool] = []

    def close_period(*args: object, **kwargs: object) -> SimpleNamespace:
        seen.append(bool(kwargs["progress"]))
        return SimpleNamespace(totals_by_currency={}, invoices=[], unreconciled=[], failed=[])

    monkeypatch.setattr("meterstream.invoice_emitter.close.close_period", close_period)
    monkeypatch.setattr("meterstream.aggregation.client.connect", lambda settings: object())
    monkeypatch.setattr("meterstream.aggregation.http_front.front_client", lambda settings, writer=False: None)
    catalog = Path(__file__).resolve().parents[1] / "data" / "catalog.yaml"
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'e.db'}", catalog=catalog)
    argv = ["close", "--period", "2026-10", "--no-publish", "--force", "--out", str(tmp_path / "out")]
    for stderr in (io.StringIO(), Tty()):
        monkeypatch.setattr(sys, "stderr", stderr)
        assert main(argv, settings=settings) == 0
    assert seen == [False, True]


@pytest.mark.kafka
def test_dlq_replay_json(kafka_settings, capsys: pytest.CaptureFixture[str]) -> None:
    """`dlq replay --json`: one JSON object (what was to replay, what was skipped, what was replayed), no table."""
    import uuid

    import orjson

    from meterstream.ingest.producer import make_producer
    from meterstream.ingest.topics import Topics, ensure_topics

    settings = kafka_settings.model_copy(update={"topic_prefix": f"clijson-{uuid.uuid4().hex[:8]}."})
    ensure_topics(settings)
    topics = Topics.from_settings(settings)
    producer = make_producer(settings)
    event = {"id": "e1", "tenant": "acme", "customer": "c1", "meter": "calls", "quantity": "1",
             "time": "2026-11-02T10:00:00Z"}  # fmt: skip
    for offset, raw in ((7, orjson.dumps(event).decode()), (8, "{not json")):
        letter = {"stage": "rate" if offset == 7 else "parse", "field": "meter", "reason": "no price",
                  "topic": topics.usage, "partition": 0, "offset": offset, "key": "acme/c1", "raw": raw,
                  "event_id": "e1" if offset == 7 else None, "tenant": "acme" if offset == 7 else None}  # fmt: skip
        producer.produce(topics.dead_letters, value=orjson.dumps(letter), key=b"acme/c1", partition=0)
    assert producer.flush(30) == 0
    from meterstream.ingest.dlq import replay_position

    for _ in range(60):  # a fresh broker answers NOT_COORDINATOR for group offsets until its coordinator loaded
        try:
            replay_position(settings)
            break
        except Exception:
            time.sleep(0.5)
    usage = topics.usage
    assert main(["dlq", "replay", "--tenant", "acme", "--dry-run", "--json"], settings=settings) == 0
    assert json.loads(capsys.readouterr().out) == {"topic": usage, "to_replay": [f"{usage}:0:7"],
                                                   "skipped_unparseable": 1, "skipped_replayed": 0,
                                                   "dry_run": True, "replayed": []}  # fmt: skip
    assert main(["dlq", "replay", "--tenant", "acme", "--yes", "--json"], settings=settings) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["to_replay"], answer["replayed"]) == ([f"{usage}:0:7"], [f"{usage}:0:7"])


def test_query_json_keeps_decimals_exact(tmp_path: Path) -> None:
    """`query --json`: the rows as objects; a Decimal as its exact text (never a float)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update(
        METERSTREAM_HOME=str(tmp_path),
        METERSTREAM_CLICKHOUSE_URL=f"chdb://{tmp_path / 'store'}",
        METERSTREAM_CLICKHOUSE_HTTP_PORT="1",
    )  # no front answers there: the embedded store itself
    sql = "SELECT 1 AS n, toDecimal128('0.10', 12) * 3 AS amount, 'acme' AS tenant, toDecimal128(0, 18) AS zero"
    done = subprocess.run([*CLI, "query", "--json", sql], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    # a zero of scale 18 as ClickHouse writes it, not Python's 0E-18
    assert json.loads(done.stdout) == [{"n": 1, "amount": "0.300000000000", "tenant": "acme",
                                        "zero": "0.000000000000000000"}]  # fmt: skip
    piped = subprocess.run([*CLI, "query", sql], env=env, capture_output=True, text=True, timeout=180)
    assert piped.stdout.splitlines() == ["n\tamount\ttenant\tzero", "1\t0.300000000000\tacme\t0.000000000000000000"]


def test_kafka_status_json(kafka_settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`kafka status --json`: the broker as one JSON object (the key=value lines' fields); exit 1 when it is down."""
    from meterstream.deploy.ports import free_port_pair
    from meterstream.schemas.settings import Settings

    assert main(["kafka", "status", "--json"], settings=kafka_settings) == 0
    pid = int((kafka_settings.home / "kafka" / "broker.pid").read_text())
    assert json.loads(capsys.readouterr().out) == {"bootstrap": kafka_settings.bootstrap, "managed": True,
                                                   "pid": pid, "answering": True, "nodes": []}  # fmt: skip
    down = Settings(home=tmp_path, kafka_port=free_port_pair())  # nothing started there
    assert main(["kafka", "status", "--json"], settings=down) == 1
    assert json.loads(capsys.readouterr().out) == {"bootstrap": down.bootstrap, "managed": True, "pid": None,
                                                   "answering": False, "nodes": []}  # fmt: skip


RATE = ["rate", "quote", "--price", '{model: graduated, currency: USD, tiers: [{up_to: "5", unit_amount: "7.00"}, '
        '{up_to: null, unit_amount: "6.50"}]}', "--quantity", "6"]  # fmt: skip


def test_rate_quote_json_on_a_terminal_and_a_table_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """`rate quote` printed JSON only; on a terminal it is now a table of the lines, `--json` keeps the JSON (and
    piped, as before, scripts get the JSON): 5 x 7.00 + 1 x 6.50 = 41.50, the decimals as exact strings."""
    tty = Tty()
    monkeypatch.setattr(sys, "stdout", tty)
    monkeypatch.setenv("COLUMNS", "120")
    assert main([*RATE, "--json"]) == 0
    quote = json.loads(tty.getvalue())
    assert (quote["currency"], quote["total"], quote["precise_total"], quote["quantity"]) == ("USD", "41.50",
                                                                                              "41.50", "6")  # fmt: skip
    assert [(ln["tier"], ln["quantity"], ln["unit_amount"], ln["amount"]) for ln in quote["lines"]] == [
        (1, "5", "7.00", "35.00"), (2, "1", "6.50", "6.50")]  # fmt: skip
    tty = Tty()
    monkeypatch.setattr(sys, "stdout", tty)
    assert main(RATE) == 0
    text = re.sub(r"\x1b\[[0-9;]*m", "", tty.getvalue())
    assert "6 -> 41.50 USD" in text
    cells = [[c.strip() for c in ln.split("│")[1:-1]] for ln in text.splitlines() if ln.count("│") == 6]
    assert [c[0:1] + c[2:] for c in cells] == [["1", "5", "7.00", "35.00"], ["2", "1", "6.50", "6.50"]]
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stdout", piped)
    assert main(RATE) == 0
    assert json.loads(piped.getvalue()) == quote


def test_every_command_that_prints_a_table_or_a_verdict_takes_json() -> None:
    found = dict(commands())
    for path, argv in ((("up",), ["--json"]), (("demo",), ["--json"]), (("chaos",), ["--json"]),
                       (("provisioning", "consume"), ["--json"]), (("kafka",), ["status", "--json"]),
                       (("rate", "quote"), ["--price", "p", "--quantity", "1", "--json"])):  # fmt: skip
        assert found[path].make_context(" ".join(path), argv).params["as_json"] is True, path


def test_up_status_json_has_the_tables_rows(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from meterstream.deploy.up import status_json, status_rows
    from meterstream.schemas.settings import Settings

    pipeline = SimpleNamespace(procs={"api": SimpleNamespace(pid=11), "processor": SimpleNamespace(pid=12),
                                      "sink": SimpleNamespace(pid=13)}, logs=tmp_path / "logs")  # fmt: skip
    settings = Settings(home=tmp_path, api_host="127.0.0.1", ops_host="127.0.0.1", processor_metrics_port=9101,
                        sink_metrics_port=9102)  # fmt: skip
    answer = json.loads(status_json(status_rows(settings, 8080, pipeline, "127.0.0.1:9092 (reused)", True)))
    services = {s["service"]: s["where"] for s in answer["services"]}
    assert answer["status"] == "up" and list(services)[:5] == ["API", "console", "OpenMeter API", "Lago API", "Kafka"]
    assert services["Kafka"] == "127.0.0.1:9092 (reused)"
    ops = "http://127.0.0.1:9101"
    assert services["processor"] == f"pid 12, metrics {ops}/metrics, health {ops}/healthz"
    assert services["logs"] == str(tmp_path / "logs")


def test_demo_summary_json_keeps_exact_decimals_and_the_text_is_built_from_it() -> None:
    from types import SimpleNamespace as NS

    from meterstream.deploy.demo import demo_summary, summary_text

    class Client:
        def query(self, sql: str) -> NS:
            if "GROUP BY currency" in sql:
                return NS(result_rows=[("EUR", Decimal("29350.634")), ("USD", Decimal("3717.59"))])
            if "dead_letters" in sql:
                return NS(result_rows=[(589,)])
            if "GROUP BY ALL" in sql:
                return NS(result_rows=[("t", "c", "m", Decimal("5"))])
            return NS(result_rows=[(96329,)])

    truth = NS(duplicates=3082, malformed=500, unratable=89, accepted=96329, produced=100000,
               quantities={("t", "c", "m"): Decimal("5")})  # fmt: skip
    metrics = {"meterstream_processor_events_in_total": 100000.0,
               "meterstream_processor_events_total{outcome=duplicate}": 3082.0,
               "meterstream_processor_events_total{outcome=dead_letter}": 589.0}  # fmt: skip
    result = NS(period="2026-11", invoices=[{"tenant": "t", "customer": "c", "currency": "EUR", "total": "12.30"}],
                totals_by_currency={"EUR": Decimal("29350.65")}, unreconciled=[])  # fmt: skip
    s = demo_summary(truth, metrics, result, Client(), NS(clickhouse_database="db"), Path("out"), 8.3, 16.7)
    assert json.loads(json.dumps(s))["streamed_amounts"] == {"EUR": "29350.634", "USD": "3717.59"}
    got = (s["invoiced_totals"], s["quantities_not_generated_truth"], s["events_per_second"])
    assert got == ({"EUR": "29350.65"}, 0, 12048)  # 100,000 / 8.3 s = 12,048.2
    text = summary_text(s).splitlines()
    assert " rated amount, streaming EUR             29350.63" in text  # the README's line (29350.634 shown to cents)
    assert " pipeline time (produce→drained)             8.3s   (12,048 events/s)" in text


def test_provisioning_applied_json(tmp_path: Path) -> None:
    from meterstream.deploy.provisioning_consumer import ProvisioningState
    from meterstream.schemas.provisioning import ProvisioningCommand

    state = ProvisioningState(tmp_path / "p.sqlite")
    c = ProvisioningCommand(id="p1", tenant="acme", customer="c1", command="suspend", reason="balance_exhausted",
                            cause="balance 0.00 EUR <= 0", state={"balance": "0.00"},
                            at="2026-12-02T04:00:00Z")  # fmt: skip
    first, again = state.apply(c).to_json(), state.apply(c).to_json()
    assert first == {"tenant": "acme", "customer": "c1", "command": "suspend", "reason": "balance_exhausted",
                     "id": "p1", "new": True, "state": "suspended", "suspended": ["balance_exhausted"], "limited": [],
                     "cause": "balance 0.00 EUR <= 0", "figures": {"balance": "0.00"},
                     "at": "2026-12-02T04:00:00Z"}  # fmt: skip
    assert again == {**first, "new": False}  # a redelivery: nothing changed
    top_up = ProvisioningCommand(id="p2", tenant="acme", customer="c1", command="reactivate",
                                 reason="balance_exhausted", cause="top-up", state={"balance": "10.00"},
                                 at="2026-12-02T04:01:00Z")  # fmt: skip
    after = state.apply(top_up).to_json()
    assert (after["command"], after["new"], after["state"], after["suspended"]) == ("reactivate", True, "active", [])
    assert json.loads(json.dumps(after))["figures"] == {"balance": "10.00"}  # figures stay decimal strings
