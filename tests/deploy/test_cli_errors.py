"""No `meterstream` command prints a traceback for a user error (issue #17): each command, run as a user would
(a subprocess of the installed CLI), with bad input, answers with one line on stderr that names the problem.

The commands are enumerated from the typer app (`deploy.cli.commands()`), so a new command is covered without
editing this file: every command runs with a setting that does not parse (the required arguments filled with
placeholders), and the commands of BAD run with their own bad input (a bad period, bad SQL, unknown ids, a missing
file); those not in BAD and not long-running also run against an entity store that cannot be opened. `dlq list |
head -1` runs through a real pipe on the real broker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import orjson
import pytest

from meterstream.deploy.cli import commands
from meterstream.deploy.ports import free_port
from meterstream.schemas.settings import Settings

CLI = [sys.executable, "-c", "import sys; from meterstream.deploy.cli import main; sys.exit(main())"]
NOPE = "NOPE-404"
# long-running services or ones that start a broker: only the bad-setting case (they must not start here)
LONG_RUNNING = {("process",), ("sink",), ("up",), ("demo",), ("chaos",), ("serve",), ("init",), ("kafka",),
                ("billing", "run"), ("provisioning", "consume")}  # fmt: skip
NO_SETTINGS = {("rate", "quote"), ("rate", "event")}  # they read no settings: their bad input is in bad_inputs
# one of two options is required (checked by the command, not the parser): the placeholder names the first
ONE_OF = {("payments", "record"): ["--invoice", "x"]}


def placeholders(path: tuple[str, ...], command: Any) -> list[str]:
    """Values for the required parameters that get past the parser (so the command itself runs)."""
    argv: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        annotation = param.type_descriptor.annotation
        choices = get_args(annotation) if get_origin(annotation) is Literal else ()
        value = str(choices[0]) if choices else ("1" if annotation is int else "x")
        if type(param).__name__ == "TyperArgument":
            argv.append(value)
        else:
            argv += [max(param.opts, key=len), value]
    return argv + ONE_OF.get(path, [])


@dataclass(frozen=True)
class Case:
    argv: list[str]
    names: str  # stderr must contain this (the field, value or reason at fault)


def bad_inputs(tmp: Path) -> dict[tuple[str, ...], Case]:
    missing = str(tmp / "no-such-file.yaml")
    return {
        ("close",): Case(["close", "--period", "2026-13"], "2026-13"),
        ("billing", "close"): Case(["billing", "close", "--period", "2026-13"], "2026-13"),
        ("query",): Case(["query", "SELEC 1"], "SYNTAX_ERROR"),
        ("revenue",): Case(["revenue", "--tenant", "acme", "--month", "2026-13"], "2026-13"),
        ("export",): Case(
            ["export", "--tenant", "acme", "--month", "2026-13", "--format", "csv", "--out", "x.csv"], "2026-13"
        ),
        ("invoices", "show"): Case(["invoices", "show", "--tenant", "acme", NOPE], NOPE),
        ("invoices", "void"): Case(["invoices", "void", "--tenant", "acme", "--reason", "r", NOPE], NOPE),
        ("invoices", "render"): Case(["invoices", "render", "--tenant", "acme", "--out", str(tmp), NOPE], NOPE),
        ("invoices", "mark-overdue"): Case(
            ["invoices", "mark-overdue", "--tenant", "acme", "--today", "2026-13-01"], "2026-13-01"
        ),
        ("payments", "record"): Case(
            [
                "payments",
                "record",
                "--tenant",
                "acme",
                "--invoice",
                NOPE,
                "--amount",
                "10",
                "--currency",
                "USD",
                "--paid-at",
                "2026-12-01",
                "--reference",
                "r",
            ],
            NOPE,
        ),
        ("credit-notes", "create"): Case(
            ["credit-notes", "create", "--tenant", "acme", "--invoice", NOPE, "--reason", "r"], NOPE
        ),
        ("keys", "revoke"): Case(["keys", "revoke", NOPE], NOPE),
        ("keys", "create"): Case(["keys", "create", "--tenant", "a/b", "--role", "read"], "tenant: 1-128 characters"),
        ("webhooks", "add"): Case(["webhooks", "add", "--tenant", "acme", "--url", "not a url"], "not a url"),
        ("webhooks", "disable"): Case(["webhooks", "disable", "--tenant", "acme", NOPE], NOPE),
        ("webhooks", "enable"): Case(["webhooks", "enable", "--tenant", "acme", NOPE], NOPE),
        ("webhooks", "replay"): Case(["webhooks", "replay", "--tenant", "acme", "--delivery", "404404"], "404404"),
        ("dlq", "show"): Case(["dlq", "show", "nope"], "nope"),
        ("rate", "quote"): Case(["rate", "quote", "--price", "bogus", "--quantity", "1"], "price"),
        ("rate", "event"): Case(["rate", "event", "--catalog", missing, "--event", "{}"], "no-such-file.yaml"),
        ("catalog", "apply"): Case(["catalog", "apply", missing], "no-such-file.yaml"),
        ("clickhouse", "grants"): Case(["clickhouse", "grants", "--key", NOPE], "--key #1: unknown or revoked"),
    }


HARNESS = r"""
import io, json, logging, os, sys, traceback
from meterstream.deploy.cli import main

class Current(logging.StreamHandler):  # logging writes to the stderr of the command being run
    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass

logging.basicConfig(handlers=[Current()], level=logging.WARNING)
results = []
real_out, real_err = sys.stdout, sys.stderr
for argv, env in json.load(sys.stdin):
    saved = dict(os.environ)
    os.environ.update(env)
    sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # escaped the boundary: what the user would see
        sys.stderr.write(traceback.format_exc())
        code = -1
    out, err = sys.stdout.getvalue(), sys.stderr.getvalue()
    sys.stdout, sys.stderr = real_out, real_err
    os.environ.clear()
    os.environ.update(saved)
    results.append({"argv": argv, "code": code, "stdout": out[-2000:], "stderr": err})
print(json.dumps(results))
"""


@dataclass
class Done:
    """What one command answered (as subprocess.CompletedProcess has it)."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_many(jobs: list[tuple[list[str], dict[str, str]]], env: dict[str, str]) -> list[Done]:
    """Run `meterstream <argv>` for each job in one interpreter (a CLI start costs seconds on a busy machine):
    `main(argv)` as the console script calls it, stdout and stderr captured per command, an exception that
    escapes `main` recorded with its traceback, as the user would see it."""
    done = subprocess.run([sys.executable, "-c", HARNESS], input=json.dumps(jobs), env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return [Done(r["argv"], r["code"], r["stdout"], r["stderr"]) for r in json.loads(done.stdout.splitlines()[-1])]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cli-errors")
    from meterstream.entities.db import migrate

    migrate(Settings(home=home, database_url=f"sqlite:///{home / 'entities.db'}"))  # once, not per command
    return home


def environment(home: Path, **overrides: str) -> dict[str, str]:
    """An isolated installation: its own home, SQLite entity store and embedded store; no front, no broker
    (a closed port), so nothing here reaches a service of the machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update(overrides_for(home))
    env.update(overrides)
    return env


def overrides_for(home: Path) -> dict[str, str]:
    return {"METERSTREAM_HOME": str(home), "METERSTREAM_DATABASE_URL": f"sqlite:///{home / 'entities.db'}",
            "METERSTREAM_CLICKHOUSE_URL": f"chdb://{home / 'store'}",
            "METERSTREAM_CLICKHOUSE_HTTP_PORT": str(free_port()),
            "METERSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "METERSTREAM_CATALOG": str(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")}  # fmt: skip


def run(argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *argv], env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(done: Done | subprocess.CompletedProcess[str], names: str, what: str) -> None:
    err = done.stderr
    assert "Traceback" not in err, f"{what}: a traceback\n{err}"
    assert done.returncode != 0, f"{what}: exit 0 for bad input\n{done.stdout}\n{err}"
    assert names in err, f"{what}: stderr does not name {names!r}: {err!r}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"{what}: more than one line: {err!r}"


def test_every_command_names_a_setting_that_does_not_parse(home: Path) -> None:
    jobs, paths = [], []
    for path, command in commands():
        if path in NO_SETTINGS:
            continue
        jobs.append(([*path, *placeholders(path, command)], {"METERSTREAM_PARTITIONS": "many"}))
        paths.append(path)
    assert len(jobs) >= 40, paths  # the enumeration found the commands
    failures = []
    for path, done in zip(paths, run_many(jobs, environment(home)), strict=True):
        try:
            assert_one_line_error(done, "METERSTREAM_PARTITIONS: Input should be a valid integer", " ".join(path))
            assert done.returncode == 2 and "(got 'many')" in done.stderr, (path, done.returncode, done.stderr)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


def test_each_command_with_bad_input_says_what_is_wrong_without_a_traceback(home: Path) -> None:
    bad = bad_inputs(home)
    known = {path for path, _ in commands()}
    assert set(bad) <= known, set(bad) - known  # a renamed command: fix its case
    jobs = [(case.argv, {}) for case in bad.values()]
    names = [(path, case.names) for path, case in bad.items()]
    # every other command that does not run a service: against an entity store that cannot be opened
    broken = {"METERSTREAM_DATABASE_URL": f"sqlite:///{home / 'no-such-dir' / 'x.db'}"}
    for path, command in commands():
        if path not in bad and path not in LONG_RUNNING and path[0] != "dlq":
            jobs.append(([*path, *placeholders(path, command)], broken))
            names.append((path, "unable to open database file"))
    failures = []
    for (path, name), done in zip(names, run_many(jobs, environment(home)), strict=True):
        try:
            assert_one_line_error(done, name, " ".join(path))
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


def test_the_installed_cli_in_its_own_process(home: Path) -> None:
    """A few of the cases as a user types them: the real process, its exit status and stderr."""
    env = environment(home)
    for argv, name, code in [(["close", "--period", "2026-13"], "period: must be YYYY-MM, got '2026-13'", 2),
                             (["query", "SELEC 1"], "SYNTAX_ERROR", 2),
                             (["invoices", "show", "--tenant", "acme", NOPE], f"no invoice '{NOPE}'", 1)]:  # fmt: skip
        done = run(argv, env)
        assert_one_line_error(done, name, " ".join(argv))
        assert done.returncode == code, (argv, done.returncode, done.stderr)


def test_unexpected_errors_are_one_line_with_the_way_to_the_traceback(home: Path) -> None:
    """A bug (not a user error) still prints one line, and METERSTREAM_DEBUG=1 shows its traceback."""
    script = ("import sys; import meterstream.deploy.cli as c, meterstream.deploy.cli_close as q; "
              "q._query = lambda args, settings: 1 / 0; sys.exit(c.main())")  # fmt: skip
    env = environment(home)
    done = subprocess.run([sys.executable, "-c", script, "query", "SELECT 1"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("meterstream query: error: ZeroDivisionError: division by zero "
                                   "(run with METERSTREAM_DEBUG=1 for the traceback)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script, "query", "SELECT 1"], env={**env, "METERSTREAM_DEBUG": "1"},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1 and "Traceback" in done.stderr and "ZeroDivisionError" in done.stderr


def test_ctrl_c_exits_130_quietly(home: Path) -> None:
    script = ("import sys; import meterstream.deploy.cli as c, meterstream.deploy.cli_close as q\n"
              "def stop(args, settings): raise KeyboardInterrupt\n"
              "q._query = stop; sys.exit(c.main())")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script, "query", "SELECT 1"], env=environment(home),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr) == (130, "")


@pytest.mark.kafka
def test_dlq_list_piped_into_head(kafka_settings: Settings, home: Path) -> None:
    """`meterstream dlq list | head -1`: head leaves after one line; the CLI stops quietly (no BrokenPipeError)."""
    from meterstream.ingest.producer import make_producer
    from meterstream.ingest.topics import Topics, ensure_topics

    settings = kafka_settings.model_copy(update={"topic_prefix": f"clierr-{uuid.uuid4().hex[:8]}."})
    ensure_topics(settings)
    producer = make_producer(settings)
    topic = Topics.from_settings(settings).dead_letters
    for i in range(3000):  # more than a pipe's buffer (64 KiB) of lines, so the write after head left fails
        letter = {"stage": "rate", "field": "meter", "reason": f"no price for meter m{i} " + "x" * 40,
                  "topic": "usage-events", "partition": 0, "offset": i, "key": "t1/c1", "raw": "{}",
                  "event_id": f"e{i}", "tenant": "t1"}  # fmt: skip
        producer.produce(topic, value=orjson.dumps(letter), key=b"t1/c1", partition=0)
    assert producer.flush(30) == 0
    env = environment(home, METERSTREAM_KAFKA_BOOTSTRAP=settings.bootstrap,
                      METERSTREAM_TOPIC_PREFIX=settings.topic_prefix)  # fmt: skip
    cli = " ".join(f"'{a}'" for a in CLI)
    done = subprocess.run(f"{cli} dlq list | head -1; exit ${{PIPESTATUS[0]}}", shell=True, executable="/bin/bash",
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.stderr == "", done.stderr
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 1 and done.stdout.strip()
