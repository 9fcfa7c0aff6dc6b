"""Issue #17's CLI defects M1-M5 and M7 (H1's audit, session 14): each command with the bad input that broke it,
run as a user runs it (the installed CLI in a child interpreter, `test_cli_errors.run_many`), answers with one line
on stderr naming the field and the reason and a non-zero exit, never a traceback nor a library's raw message.

- M1 `serve|up --port 99999` listened on 99999 mod 65536;
- M2 `rate event --catalog deploy/demo_catalog.yaml` refused the demo's own catalog (`telecom: {file: ...}`), and a
  catalog that is not YAML exited 1 as a bug;
- M3 with the embedded store held by another process (the sink) and its ClickHouse HTTP front not answering,
  `close` and `billing drafts` printed chdb's "Cannot lock file" line and then a ProgrammingError, `query` the chdb
  line before its explanation;
- M4 `query ""` answered "Unknown expression identifier FORMAT";
- M5 `rate quote --quantity 1e400` answered "invalid quantity: [<class 'decimal.InvalidOperation'>]";
- M7 `close --customer nope` / `billing close --customer nope` exited 0 with "0 invoices written".
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_errors import assert_one_line_error, environment, run, run_many

from meterstream.aggregation.client import store_holder
from meterstream.deploy.cli_close import is_blank
from meterstream.deploy.ports import free_port
from meterstream.schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEMO_CATALOG = ROOT / "deploy" / "demo_catalog.yaml"
# Tue 4 Mar 2025 17:58:30 UTC = 18:58:30 Berlin, national fixed, 150 s, 50 s of the 300-minute bundle left
# (17,950 s used): peak [0,90): 50 s free, 40 s x 0.09/60 = 0.06; offpeak [90,150): 60 s x 0.04/60 = 0.04 -> 0.1000
VOICE = {"id": "cdr-1", "meter": "voice_seconds", "quantity": "150", "time": "2025-03-04T17:58:30Z",
         "dimensions": {"destination": "+4930123456"}}  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An installation's data directory with its entity store (SQLite, migrated once)."""
    from meterstream.entities.db import migrate

    home = tmp_path_factory.mktemp("cli-errors-more")
    migrate(Settings(home=home, database_url=f"sqlite:///{home / 'entities.db'}"))
    return home


# --- M1: ports out of range ---------------------------------------------------------------------------------


def test_a_port_out_of_range_is_refused_before_anything_starts(home: Path) -> None:
    cases = [(["serve", "--port", "99999"], "less than or equal to 65535"),
             (["serve", "--port", "0"], "greater than or equal to 1"),
             (["up", "--port", "65536"], "less than or equal to 65535"),
             (["up", "--port", "-1"], "greater than or equal to 1")]  # fmt: skip
    for (argv, names), done in zip(cases, run_many([(a, {}) for a, _ in cases], environment(home)), strict=True):
        assert_one_line_error(done, names, " ".join(argv))
        assert done.returncode == 2 and "'--port'" in done.stderr, (argv, done.returncode, done.stderr)


def test_a_port_setting_out_of_range_names_its_variable(home: Path) -> None:
    cases = [("METERSTREAM_API_PORT", "99999", "less than or equal to 65535"),
             ("METERSTREAM_KAFKA_PORT", "65535", "less than or equal to 65534"),  # its controller listens on + 1
             ("METERSTREAM_PROCESSOR_METRICS_PORT", "70000", "less than or equal to 65535"),
             ("METERSTREAM_SINK_METRICS_PORT", "0", "greater than or equal to 1")]  # fmt: skip
    jobs = [(["keys", "list"], {variable: value}) for variable, value, _ in cases]
    for (variable, value, bound), done in zip(cases, run_many(jobs, environment(home)), strict=True):
        assert_one_line_error(done, f"{variable}: Input should be {bound} (got '{value}')", variable)
        assert done.returncode == 2


# --- M2: the demo's catalog, and catalogs that are not YAML -------------------------------------------------


def test_rate_event_reads_the_demo_catalog_and_its_telecom_file(home: Path) -> None:
    argv = ["rate", "event", "--catalog", str(DEMO_CATALOG), "--event", json.dumps(VOICE),
            "--bundle-used", '{"national_minutes": "17950"}']  # fmt: skip
    [done] = run_many([(argv, {})], environment(home))
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    doc = json.loads(done.stdout)
    assert (doc["cost"], doc["currency"]) == ("0.1000", "EUR")
    assert doc["bundle_units_used"] == {"national_minutes": "50"}


def test_rate_event_with_a_broken_catalog_is_one_line_and_exit_2(home: Path, tmp_path: Path) -> None:
    not_yaml = tmp_path / "broken.yaml"
    not_yaml.write_text("plans: [\n  - id: x\n   bad")
    missing_ref = tmp_path / "ref.yaml"
    missing_ref.write_text("plans:\n  - id: tel\n    currency: EUR\n    telecom: {file: no-such-section.yaml}\n")
    list_doc = tmp_path / "list.yaml"
    list_doc.write_text("- a\n- b\n")
    # a block entry inside a flow sequence: the '-' at line 2, column 3
    cases = [(not_yaml, f'{not_yaml}: not valid YAML/JSON ('),
             (missing_ref, f"plans[0].telecom.file: cannot read {tmp_path / 'no-such-section.yaml'}"),
             (list_doc, f"{list_doc}: not a mapping")]  # fmt: skip
    jobs = [(["rate", "event", "--catalog", str(path), "--event", json.dumps(VOICE)], {}) for path, _ in cases]
    for (path, names), done in zip(cases, run_many(jobs, environment(home)), strict=True):
        assert_one_line_error(done, names, f"rate event --catalog {path.name}")
        assert done.returncode == 2, (path, done.returncode, done.stderr)
        assert path != not_yaml or f'in "{not_yaml}", line 2, column 3)' in done.stderr  # where in the file


# --- M3: the store held by another process, its front not answering -----------------------------------------

HOLDER = """
import sys, time
from meterstream.aggregation.client import connect
client = connect(dsn="chdb://" + sys.argv[1])  # kept: the store stays open while the client lives
client.command("SELECT 1")
print("holding", flush=True)
time.sleep(300)
"""


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """An embedded store opened by another process (as the sink holds it), which serves no front."""
    store = tmp_path / "store"
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(store)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "holding"
        deadline = time.monotonic() + 30  # chdb writes and locks the store's status file a moment after opening it
        while store_holder(str(store)) != child.pid and time.monotonic() < deadline:
            time.sleep(0.05)
        yield store, child.pid
    finally:
        child.kill()
        child.wait(30)


def test_a_store_held_with_no_front_is_one_line_and_chdb_is_never_opened(
    home: Path, tmp_path: Path, held: tuple[Path, int]
) -> None:
    store, pid = held
    assert store_holder(str(store)) == pid  # the lock and the PID ClickHouse writes in the store's status file
    port = free_port()  # nothing listens there
    env = environment(home, METERSTREAM_CLICKHOUSE_URL=f"chdb://{store}", METERSTREAM_CLICKHOUSE_HTTP_PORT=str(port))
    out = str(tmp_path / "inv")
    commands = [["query", "SELECT 1"], ["close", "--period", "2026-10", "--force", "--no-publish", "--out", out]]
    expected = (f"owns the embedded store {store} and its ClickHouse HTTP front does not answer at "
                f"http://127.0.0.1:{port}: Connection refused")  # fmt: skip
    for argv, done in zip(commands, run_many([(a, {}) for a in commands], env), strict=True):
        assert_one_line_error(done, f"error: process {pid} (python -c import sys, time from meterstream", argv[0])
        assert expected in done.stderr, done.stderr
        assert done.returncode == 2 and "Cannot lock" not in done.stderr and "Code:" not in done.stderr
    # as a user runs it: chdb, had it been opened, would print "Cannot lock file" to the process's own stderr
    done = run(["query", "SELECT 1"], env)
    assert_one_line_error(done, expected, "query (its own process)")
    assert "Cannot lock" not in done.stderr and "Code: 76" not in done.stderr
    # the front switched off: said so
    [done] = run_many([(["query", "SELECT 1"], {"METERSTREAM_CLICKHOUSE_HTTP_PORT": "0"})], env)
    assert_one_line_error(done, "front cannot be reached: METERSTREAM_CLICKHOUSE_HTTP_PORT is 0 (off) here", "query")


@pytest.mark.kafka
def test_init_on_a_held_store_is_one_line(kafka_settings: Settings, home: Path, held: tuple[Path, int]) -> None:
    """`meterstream init` with the sink running: its tables through the front, or one line saying why not."""
    store, pid = held
    port = free_port()
    env = environment(home, METERSTREAM_CLICKHOUSE_URL=f"chdb://{store}", METERSTREAM_CLICKHOUSE_HTTP_PORT=str(port))
    kafka = {"METERSTREAM_KAFKA_BOOTSTRAP": kafka_settings.bootstrap, "METERSTREAM_TOPIC_PREFIX": "clierr-init."}
    done = run(["init"], {**env, **kafka})
    assert_one_line_error(done, f"process {pid} (python -c import sys", "init")
    assert f"owns the embedded store {store} and its ClickHouse HTTP front does not answer" in done.stderr
    assert "Cannot lock" not in done.stderr and done.returncode == 2


def test_billing_commands_on_a_held_store_are_one_line(home: Path, tmp_path: Path, held: tuple[Path, int]) -> None:
    store, pid = held
    port = free_port()
    env = environment(home, METERSTREAM_CLICKHOUSE_URL=f"chdb://{store}", METERSTREAM_CLICKHOUSE_HTTP_PORT=str(port))
    close = ["billing", "close", "--period", "2026-10", "--force", "--no-publish", "--out", str(tmp_path)]
    commands = [["billing", "drafts"], close]
    for argv, done in zip(commands, run_many([(a, {}) for a in commands], env), strict=True):
        assert_one_line_error(done, f"process {pid} (python -c import sys", " ".join(argv))
        assert f"owns the embedded store {store} and its ClickHouse HTTP front does not answer" in done.stderr
        assert "Cannot lock" not in done.stderr


def test_a_store_nobody_holds_is_opened_directly(home: Path, tmp_path: Path) -> None:
    """The lock check does not get in the way: the store released, the same command answers."""
    store = tmp_path / "store"
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(store)], stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None and child.stdout.readline().strip() == "holding"
        deadline = time.monotonic() + 30
        while store_holder(str(store)) != child.pid and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store_holder(str(store)) == child.pid
        child.kill()
    deadline = time.monotonic() + 30
    while store_holder(str(store)) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store_holder(str(store)) is None
    env = environment(home, METERSTREAM_CLICKHOUSE_URL=f"chdb://{store}")
    [done] = run_many([(["query", "SELECT 40 + 2 AS answer"], {})], env)
    assert (done.returncode, done.stderr, done.stdout.split()) == (0, "", ["answer", "42"])


def test_this_process_s_own_engine_does_not_count_as_held(chdb_client, tmp_path: Path) -> None:
    """The session's store (tests/conftest.py) is open in this process: its lock is ours, not another's."""
    chdb_client.command("SELECT 1")
    own = list(tmp_path.parent.glob("chdb*/status"))
    assert own and all(store_holder(str(status.parent)) is None for status in own)
    assert store_holder(str(tmp_path / "nothing-here")) is None


# --- M4: an empty statement ---------------------------------------------------------------------------------


def test_an_empty_statement_is_named(home: Path) -> None:
    texts = ["", "   ", " ;; ", "-- only a comment\n", "/* only */ # this too"]
    jobs = [(["query", "--", text], {}) for text in texts]
    for text, done in zip(texts, run_many(jobs, environment(home)), strict=True):
        said = " ".join(f"sql: the statement is empty (got {text!r})".split())  # one line: spaces collapsed
        assert_one_line_error(done, said, f"query {text!r}")
        assert done.returncode == 2 and "FORMAT" not in done.stderr


def test_is_blank_reads_comments_as_clickhouse_does() -> None:
    assert is_blank("") and is_blank(" ;\n; ") and is_blank("-- a\n# b\n/* c\n d */;")
    assert not is_blank("SELECT 1") and not is_blank("-- a\nSELECT 1") and not is_blank("/* c */ SELECT 1")
    assert not is_blank("/* never closed") and not is_blank("'-- in quotes'")


# --- M5: a quantity the engine cannot price exactly --------------------------------------------------------


def test_rate_quote_with_a_quantity_beyond_the_engine_s_precision(home: Path) -> None:
    price = '{"model": "unit", "unit_amount": "0.10", "currency": "EUR"}'
    # 1e400 x 0.10 rounded to cents needs 400 digits; 61 significant digits x 0.10 needs 61 (the engine has 60)
    cases = ["1e400", "1.000000000000000000000000000000000000000000000000000000000001"]
    jobs = [(["rate", "quote", "--price", price, "--quantity", q], {}) for q in cases]
    for q, done in zip(cases, run_many(jobs, environment(home)), strict=True):
        assert_one_line_error(done, f"invalid quantity: {q!r} cannot be priced exactly: its amounts need more than "
                              "60 significant digits", f"rate quote --quantity {q}")  # fmt: skip
        assert "decimal." not in done.stderr and done.returncode == 2


# --- M7: a close of one customer that matches nothing -----------------------------------------------------

SEED = """
import sys, uuid
from datetime import UTC, datetime
from decimal import Decimal
from meterstream.aggregation.client import connect
from meterstream.aggregation.ddl import create_schema
from meterstream.aggregation.rows import RATED_COLUMNS
client = connect(dsn="chdb://" + sys.argv[1])
create_schema(client, "meterstream")
row = ["t1", uuid.uuid4().hex, "c1", "", "api_calls", datetime(2026, 10, 15, tzinfo=UTC), "2026-10", Decimal(30),
       Decimal(10), Decimal(30), "USD", "basic", "api_calls", {}, "", 0, 0]  # quantity, streamed amount, cumulative
client.insert("meterstream.rated_usage", [row], column_names=list(RATED_COLUMNS))
"""


@pytest.fixture
def seeded(home: Path, tmp_path: Path) -> dict[str, str]:
    """A store with t1/c1's 30 api_calls in 2026-10, streamed at 10 USD (tests/data/catalog.yaml, plan basic: 10
    free, then 0.50 each: (30 - 10) x 0.50 = 10.00), written by another process, which has let go of it."""
    store = tmp_path / "store"
    subprocess.run([sys.executable, "-c", SEED, str(store)], check=True, timeout=120)
    return environment(home, METERSTREAM_CLICKHOUSE_URL=f"chdb://{store}")


def test_close_of_a_customer_that_matches_nothing_says_so(seeded: dict[str, str], tmp_path: Path) -> None:
    out = str(tmp_path / "inv")
    close = ["close", "--period", "2026-10", "--force", "--no-publish", "--out", out]
    jobs = [([*close, "--tenant", "t1", "--customer", "nope"], {}),  # the tenant named: no lookup to fail it
            ([*close, "--tenant", "t1", "--customer", "c1"], {})]  # fmt: skip
    nope, c1 = run_many(jobs, seeded)
    assert_one_line_error(nope, "customer: nothing to invoice for t1/nope in 2026-10 (", "close --customer nope")
    assert nope.returncode == 2 and not (tmp_path / "inv" / "2026-10" / "t1" / "nope.json").exists()
    assert (c1.returncode, c1.stderr) == (0, ""), c1.stderr  # one that matches: invoiced as before
    assert c1.stdout.splitlines()[0] == "2026-10: USD 10.00"
    assert json.loads((tmp_path / "inv" / "2026-10" / "t1" / "c1.json").read_text())["total"] == "10.00"


def test_billing_close_of_a_customer_that_matches_nothing_says_so(seeded: dict[str, str], tmp_path: Path) -> None:
    argv = ["billing", "close", "--period", "2026-10", "--force", "--no-publish", "--out", str(tmp_path),
            "--tenant", "t1", "--customer", "nope"]  # fmt: skip
    [done] = run_many([(argv, {})], seeded)
    assert_one_line_error(done, "customer: nothing to invoice for t1/nope in 2026-10 (", "billing close")
    assert done.returncode == 2
    assert json.loads(done.stdout)["field"] == "customer"


def test_rate_quote_with_a_price_that_is_not_yaml_says_so_on_one_line(home: Path) -> None:
    """YAML's parse error spans six lines (with a caret drawing); the CLI's errors are one line (docs/cli.md)."""
    (done,) = run_many([(["rate", "quote", "--price", "{bad", "--quantity", "1"], {})], environment(home))
    assert_one_line_error(done, "invalid price: cannot read '{bad': while parsing a flow mapping", "rate quote {bad")
    assert done.returncode == 2


def test_close_of_a_customer_in_a_period_closed_for_everyone_says_where_its_usage_goes(
    home: Path, tmp_path: Path
) -> None:
    """2026-10 is closed for every customer (`period_closes`) before c1's usage of it was invoiced: a close of c1
    alone for 2026-10 writes nothing, and says why (an audit got "no usage and nothing else billed" for a customer
    whose usage was there, and went to the next close as late usage)."""
    store = tmp_path / "store"
    mark = "from meterstream.invoice_emitter.ledger import mark_closed\nmark_closed(client, 'meterstream', '2026-10')\n"
    subprocess.run([sys.executable, "-c", SEED + mark, str(store)], check=True, timeout=120)
    env = environment(home, METERSTREAM_CLICKHOUSE_URL=f"chdb://{store}")
    close = ["close", "--period", "2026-10", "--force", "--no-publish", "--out", str(tmp_path / "inv")]
    [done] = run_many([([*close, "--tenant", "t1", "--customer", "c1"], {})], env)
    assert_one_line_error(done, "customer: nothing to invoice for t1/c1 in 2026-10: 2026-10 is closed for every "
                          "customer, so its usage and fees that come now are billed as adjustments on the customer's "
                          "next close", "close --customer c1 of a closed period")  # fmt: skip
    assert done.returncode == 2


def test_billing_run_refuses_a_negative_wait(home: Path) -> None:
    [done] = run_many([(["billing", "run", "--wait", "-5"], {})], environment(home))
    assert_one_line_error(done, "Invalid value for '--wait'", "billing run --wait -5")
    assert done.returncode == 2
