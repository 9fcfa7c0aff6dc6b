"""`rate` and `dlq` errors read as every command's, `meterstream <command>: error: <what and why>`, exit 2 (session 17,
the audit's item 1): `rate event --catalog <missing>` printed `error: [Errno 2] No such file or directory: ...`
(no command, the errno), bad `--event` JSON `error: KeyError('quantity')` or `[<class 'decimal.ConversionSyntax'>]`,
`rate quote --price <missing file>` "a price must be a mapping, got str"; `dlq list|show|replay` with the broker not
reachable printed librdkafka's connection log for 10 s and then a KafkaException worded as a bug (exit 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_errors import assert_one_line_error, environment, run_many

from meterstream.schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEMO_CATALOG = str(ROOT / "deploy" / "demo_catalog.yaml")
EVENT = {"meter": "voice_seconds", "quantity": "150", "time": "2025-03-04T17:58:30Z"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from meterstream.entities.db import migrate

    home = tmp_path_factory.mktemp("cli-errors-rate-dlq")
    migrate(Settings(home=home, database_url=f"sqlite:///{home / 'entities.db'}"))
    return home


def test_rate_refusals_name_the_command_the_option_and_the_reason(home: Path) -> None:
    missing = str(home / "no-such-catalog.yaml")
    event = json.dumps(EVENT)
    cases = [
        (["rate", "event", "--catalog", missing, "--event", event], f"--catalog: no such file: {missing}"),
        (["rate", "event", "--catalog", str(home), "--event", event], f"--catalog: not a file: {home}"),
        (["rate", "event", "--catalog", DEMO_CATALOG, "--event", "{}"], "--event: missing meter, quantity, time"),
        (["rate", "event", "--catalog", DEMO_CATALOG, "--event", json.dumps({**EVENT, "quantity": "x"})],
         "--event: quantity must be a decimal number, got 'x'"),
        (["rate", "event", "--catalog", DEMO_CATALOG, "--event", json.dumps({**EVENT, "time": "yesterday"})],
         "--event: time must be an ISO 8601 time"),
        (["rate", "event", "--catalog", DEMO_CATALOG, "--event", f"@{missing}.json"],
         f"--event: cannot read {missing}.json: No such file or directory"),
        (["rate", "event", "--catalog", DEMO_CATALOG, "--event", event, "--bundle-used", "[1]"],
         "--bundle-used: must be a JSON object"),
        # refused by the rating itself (rating/telecom/cli.py): its reason, worded as the CLI's
        (["rate", "event", "--catalog", DEMO_CATALOG, "--event", event, "--plan", "nope"],
         "no plan with a telecom section nope"),
        (["rate", "quote", "--price", missing, "--quantity", "1"], f"--price: no such file: {missing}"),
        (["rate", "quote", "--price", "{model: flat}", "--quantity", "1"], "invalid price: "),
    ]  # fmt: skip
    for (argv, names), done in zip(cases, run_many([(a, {}) for a, _ in cases], environment(home)), strict=True):
        assert_one_line_error(done, names, " ".join(argv))
        assert done.stderr.startswith("meterstream rate: error: "), (argv, done.stderr)
        assert done.returncode == 2, (argv, done.returncode, done.stderr)


def test_rate_event_no_rate_is_still_its_json_and_exit_1(home: Path) -> None:
    argv = ["rate", "event", "--catalog", DEMO_CATALOG, "--event", json.dumps({**EVENT, "meter": "nope"})]
    [done] = run_many([(argv, {})], environment(home))
    assert (done.returncode, done.stderr) == (1, "")
    assert json.loads(done.stdout)["error"] == "meter not rated by plan"


def test_dlq_with_the_broker_unreachable_says_so_on_one_line(home: Path) -> None:
    env = environment(home)  # METERSTREAM_KAFKA_BOOTSTRAP: a closed port of this machine
    bootstrap = env["METERSTREAM_KAFKA_BOOTSTRAP"]
    cases = [["dlq", "list"], ["dlq", "list", "--json"], ["dlq", "show", "0:1"], ["dlq", "replay", "--dry-run"],
             ["dlq", "replay", "--yes", "0:1"]]  # fmt: skip
    for argv, done in zip(cases, run_many([(a, {}) for a in cases], env), strict=True):
        assert_one_line_error(done, f"the Kafka broker at {bootstrap} cannot be reached (", " ".join(argv))
        assert done.stderr.startswith("meterstream dlq: error: "), (argv, done.stderr)
        assert "run with METERSTREAM_DEBUG" not in done.stderr and "KafkaException" not in done.stderr
        assert done.returncode == 2, (argv, done.returncode, done.stderr)


def test_dlq_a_bad_position_is_named_before_the_broker_is_asked(home: Path) -> None:
    [done] = run_many([(["dlq", "show", "nope"], {})], environment(home))
    assert_one_line_error(done, "'nope': expected PARTITION:OFFSET", "dlq show nope")
    assert done.returncode == 2


def test_init_with_the_named_broker_unreachable_says_so_on_one_line(home: Path) -> None:
    """`init` with METERSTREAM_KAFKA_BOOTSTRAP naming a broker that does not answer printed librdkafka's connection
    log line by line and then `KafkaException: ... (run with METERSTREAM_DEBUG=1 for the traceback)`, exit 1."""
    env = environment(home)
    [done] = run_many([(["init"], {})], env)
    assert_one_line_error(done, f"the Kafka broker at {env['METERSTREAM_KAFKA_BOOTSTRAP']} cannot be reached", "init")
    assert done.stderr.startswith("meterstream init: error: ") and "KafkaException" not in done.stderr
    assert done.returncode == 2
