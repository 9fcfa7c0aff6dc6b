"""`meterstream dlq` on the real broker: list/filter/dedup, show, replay, and "a re-driven event is charged once"."""

from __future__ import annotations

import io
import re
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import Consumer, Message, TopicPartition

from meterstream.deploy.cli import main
from meterstream.ingest.dlq import (
    REPLAY_HEADER,
    DeadLetterRecord,
    ReplayResult,
    advance,
    parse_position,
    read_dead_letters,
    read_marks,
    replay_dead_letters,
    replay_position,
)
from meterstream.ingest.producer import make_producer
from meterstream.ingest.topics import Topics, ensure_topics
from meterstream.processor.step import Kind, Position, process
from meterstream.rating.catalog import load_catalog, parse_catalog
from meterstream.schemas.rated import DeadLetter
from meterstream.schemas.settings import Settings

pytestmark = pytest.mark.kafka

CATALOG_PATH = Path(__file__).resolve().parents[1] / "data" / "catalog.yaml"
WINDOW = 35 * 86_400_000
USAGE = "usage-events"


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    """A fresh set of topics per test on the session broker."""
    s = kafka_settings.model_copy(update={"topic_prefix": f"dlq-{uuid.uuid4().hex[:10]}."})
    ensure_topics(s)
    return s


def event(i: str, tenant: str = "t1", customer: str = "c1", meter: str = "api_calls", q: str = "20") -> str:
    return orjson.dumps(
        {"id": i, "tenant": tenant, "customer": customer, "meter": meter, "quantity": q, "time": "2026-10-05T00:00:00Z"}
    ).decode()


def dead_letter(stage: str, field: str, reason: str, partition: int, offset: int, raw: str, **kw: Any) -> DeadLetter:
    return {
        "stage": stage,
        "field": field,
        "reason": reason,
        "topic": kw.get("topic", USAGE),
        "partition": partition,
        "offset": offset,
        "key": kw.get("key"),
        "raw": raw,
        "event_id": kw.get("event_id"),
        "tenant": kw.get("tenant"),
    }


NO_PLAN = dead_letter(
    "rate", "customer", "no plan for customer nobody/c1", 1, 5, event("n1", "nobody"),
    key="nobody/c1", event_id="n1", tenant="nobody",
)  # fmt: skip
NO_METER = dead_letter(
    "rate", "meter", "plan 'basic' does not price meter 'sms'", 2, 7, event("m1", meter="sms"),
    key="t1/c1", event_id="m1", tenant="t1",
)  # fmt: skip
NOT_JSON = dead_letter("parse", "$", "not valid JSON", 0, 3, "{oops", key="t1/c1")
NOT_OBJECT = dead_letter("parse", "$", "must be a JSON object", 0, 4, "[1, 2]")
NO_KEY = dead_letter(
    "rate", "customer", "no plan for customer nobody/c2", 3, 9, event("n2", "nobody", "c2"),
    event_id="n2", tenant="nobody",
)  # fmt: skip


def produce_dead_letters(settings: Settings, records: list[DeadLetter | bytes]) -> None:
    """As the processor does: original key, same partition number as the source (bytes: garbage)."""
    producer = make_producer(settings)
    topic = Topics.from_settings(settings).dead_letters
    for r in records:
        if isinstance(r, bytes):
            producer.produce(topic, value=r, partition=0)
        else:
            key = r["key"].encode() if r["key"] is not None else None
            producer.produce(topic, value=orjson.dumps(r), key=key, partition=r["partition"])
    assert producer.flush(30) == 0


def consume_all(settings: Settings, topic: str, expected: int, timeout: float = 30.0) -> list[Message]:
    """Read `expected` messages from every partition of `topic`, from the beginning, committing nothing."""
    consumer = Consumer(
        {"bootstrap.servers": settings.bootstrap, "group.id": f"t-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            out += [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
        time.sleep(0.5)  # nothing more should arrive
        out += [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
        return sorted(out, key=lambda m: (m.partition(), m.offset()))
    finally:
        consumer.close()


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def cli(settings: Settings, *argv: str) -> int:
    """`meterstream dlq ...` through the real CLI (`deploy.cli.main`), with these settings."""
    return main(["dlq", *argv], settings=settings)


def test_list_filters_and_dedups_by_source_position(settings: Settings) -> None:
    # the processor repeated NO_PLAN after a crash: a second, identical copy later in partition 1
    produce_dead_letters(settings, [NOT_JSON, NO_PLAN, NO_METER, NOT_OBJECT, NO_KEY, b"not a dead letter", NO_PLAN])
    records = read_dead_letters(settings)
    assert [r.position for r in records] == ["0:3", "0:4", "1:5", "2:7", "3:9"]
    no_plan = records[2]
    assert (no_plan.dlq_partition, no_plan.dlq_offset) == (1, 0)  # the first copy is kept
    assert no_plan.raw == NO_PLAN["raw"] and no_plan.key == "nobody/c1" and no_plan.tenant == "nobody"

    assert [r.position for r in read_dead_letters(settings, stage="parse")] == ["0:3", "0:4"]
    assert [r.position for r in read_dead_letters(settings, reason_contains="NO PLAN")] == ["1:5", "3:9"]
    # the parse error 0:3 has no tenant field, but its Kafka key t1/c1 names the tenant (issue #17)
    assert [r.position for r in read_dead_letters(settings, tenant="t1")] == ["0:3", "2:7"]
    assert [r.position for r in read_dead_letters(settings, stage="rate", tenant="nobody", limit=1)] == ["1:5"]
    assert read_dead_letters(settings, stage="rate", reason_contains="destination") == []


def test_empty_topic_reads_nothing(settings: Settings) -> None:
    assert read_dead_letters(settings) == []


def test_cli_list_and_show(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    produce_dead_letters(settings, [NOT_JSON, NO_PLAN, NO_METER, NO_PLAN])
    assert cli(settings, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["POSITION", "STAGE", "FIELD", "REASON"]
    assert len(lines) == 4 and lines[2].split()[:3] == ["1:5", "rate", "customer"]
    assert lines[2].split()[-2:] == ["nobody", "n1"]

    assert cli(settings, "list", "--stage", "rate", "--json") == 0
    rows = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["partition"], r["offset"], r["field"]) for r in rows] == [(1, 5, "customer"), (2, 7, "meter")]
    assert rows[0]["raw"] == NO_PLAN["raw"] and rows[0]["dlq_offset"] == 0

    assert cli(settings, "show", "2:7") == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert {k: shown[k] for k in NO_METER} == NO_METER
    assert cli(settings, "show", "2:8") == 1
    assert cli(settings, "show", "two") == 2


def test_parse_position() -> None:
    assert parse_position("3:1234") == (3, 1234)
    assert parse_position("usage-events:3:1234") == (3, 1234)
    for bad in ("3", "a:b", "-1:2", ""):
        with pytest.raises(ValueError):
            parse_position(bad)


def test_replay_sends_raw_bytes_key_and_header_and_skips_unparseable(settings: Settings) -> None:
    produce_dead_letters(settings, [NOT_JSON, NO_PLAN, NO_METER, NOT_OBJECT, NO_KEY, NO_PLAN])
    records = read_dead_letters(settings)
    result = replay_dead_letters(settings, records)
    assert result == ReplayResult(
        replayed=[f"{USAGE}:1:5", f"{USAGE}:2:7", f"{USAGE}:3:9"],
        skipped_unparseable=[f"{USAGE}:0:3", f"{USAGE}:0:4"],
    )
    usage = Topics.from_settings(settings).usage
    got = consume_all(settings, usage, 3)
    assert [(m.partition(), m.key(), m.value(), m.headers()) for m in got] == [
        (1, b"nobody/c1", NO_PLAN["raw"].encode(), [(REPLAY_HEADER, f"{USAGE}:1:5".encode())]),
        (2, b"t1/c1", NO_METER["raw"].encode(), [(REPLAY_HEADER, f"{USAGE}:2:7".encode())]),
        (3, None, NO_KEY["raw"].encode(), [(REPLAY_HEADER, f"{USAGE}:3:9".encode())]),
    ]


def test_replay_include_unparseable(settings: Settings) -> None:
    produce_dead_letters(settings, [NOT_JSON, NO_PLAN])
    result = replay_dead_letters(settings, read_dead_letters(settings, stage="parse"), include_unparseable=True)
    assert result.replayed == [f"{USAGE}:0:3"] and result.skipped_unparseable == []
    got = consume_all(settings, Topics.from_settings(settings).usage, 1)
    assert [(m.key(), m.value()) for m in got] == [(b"t1/c1", b"{oops")]


def test_cli_replay_dry_run_refusal_and_yes(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    produce_dead_letters(settings, [NOT_JSON, NO_PLAN, NO_METER, NO_KEY])
    usage = Topics.from_settings(settings).usage
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a TTY

    assert cli(settings, "replay", "--tenant", "nobody", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "2 dead letters to replay" in out and "1:5" in out and "3:9" in out

    assert cli(settings, "replay", "--tenant", "nobody") == 2
    assert "--yes" in capsys.readouterr().err

    assert cli(settings, "replay", "--stage", "parse", "--yes") == 0  # nothing replayable: nothing sent
    assert "0 dead letters to replay" in (out := capsys.readouterr().out) and "1 unparseable skipped" in out

    monkeypatch.setattr("sys.stdin", Tty("n\n"))
    assert cli(settings, "replay", "--tenant", "nobody") == 1  # asked, declined
    assert "nothing replayed" in capsys.readouterr().out

    assert cli(settings, "replay", "--position", "1:5", "2:7", "--yes") == 0
    assert f"replayed 2 events to {usage}" in capsys.readouterr().out
    got = consume_all(settings, usage, 2)
    assert [m.headers()[0][1] for m in got] == [f"{USAGE}:1:5".encode(), f"{USAGE}:2:7".encode()]


def test_replayed_event_is_charged_once(settings: Settings) -> None:
    """No plan for tenant "nobody": dead-lettered at "rate"; the catalog is fixed; replayed twice -> rated once."""
    catalog = load_catalog(CATALOG_PATH)
    state: dict[str, Any] = {}
    raw = event("late-1", "nobody").encode()
    out = process(catalog, state, raw, Position(USAGE, 1, 5, b"nobody/c1"), 1_000, WINDOW)
    assert out.kind is Kind.DEAD_LETTER and out.dead_letter is not None
    assert (out.dead_letter["stage"], out.dead_letter["field"]) == ("rate", "customer")
    assert state == {}  # no dedup entry for a dead-lettered event: the first replay will be new

    doc = yaml.safe_load(CATALOG_PATH.read_text())
    doc["assignments"].append({"tenant": "nobody", "customer": "*", "plan": "basic"})
    fixed = parse_catalog(doc)

    produce_dead_letters(settings, [out.dead_letter])
    records = read_dead_letters(settings, stage="rate", tenant="nobody")
    assert len(records) == 1
    replay_dead_letters(settings, records)
    replay_dead_letters(settings, records)  # an operator replays twice
    replays = consume_all(settings, Topics.from_settings(settings).usage, 2)
    assert [(m.partition(), m.offset()) for m in replays] == [(1, 0), (1, 1)]  # two new offsets, same partition

    outcomes = [
        process(fixed, state, m.value(), Position(USAGE, m.partition(), m.offset(), m.key()), 2_000, WINDOW)
        for m in replays
    ]
    assert [o.kind for o in outcomes] == [Kind.RATED, Kind.DUPLICATE]
    rated = outcomes[0].rated
    assert rated is not None and rated["id"] == "late-1" and rated["tenant"] == "nobody"
    assert Decimal(rated["amount"]) == Decimal("5")  # 20 api_calls on basic: 10 free, 10 at 0.5


# ---- the replay position and the marks (#12, #17) -------------------------------------------------------------
# Before: every replay read the whole dead-letter topic and offered every letter again (a second `replay --yes`
# re-sent all of them), and nothing said which letters had been replayed. Now a replay reads from the offsets
# the group `meterstream-dlq-replay` committed, skips letters marked on `dead-letters-replayed`, and `dlq list`
# shows when each letter was replayed.

LATER = dead_letter(
    "rate", "customer", "no plan for customer nobody/c3", 1, 6, event("n3", "nobody", "c3"),
    key="nobody/c3", event_id="n3", tenant="nobody",
)  # fmt: skip


def _letter(partition: int, offset: int, source_offset: int) -> DeadLetterRecord:
    return DeadLetterRecord(stage="rate", field="customer", reason="r", topic=USAGE, partition=partition,
                            offset=source_offset, key=None, raw="{}", event_id=None, tenant=None,
                            dlq_partition=partition, dlq_offset=offset)  # fmt: skip


def test_the_position_moves_over_settled_messages_up_to_the_first_letter_that_is_not() -> None:
    scanned = [
        (0, 10, _letter(0, 10, 100)), (0, 11, None), (0, 12, _letter(0, 12, 101)), (0, 13, _letter(0, 13, 102)),
        (1, 4, _letter(1, 4, 200)), (1, 5, _letter(1, 5, 200)),  # a repeated letter: same source, settled alike
        (2, 0, _letter(2, 0, 300)),
    ]  # fmt: skip
    settled = {f"{USAGE}:0:100", f"{USAGE}:0:102", f"{USAGE}:1:200"}
    # partition 0: 10 settled, 11 no letter, 12 not settled -> stops at 12 (13 is offered again, harmless);
    # partition 1: both copies settled -> 6; partition 2: nothing settled -> stays where it started (absent)
    assert advance(scanned, settled, {0: 10, 1: 4}) == {0: 12, 1: 6}
    assert advance([], settled, {0: 3}) == {0: 3}


def _headers(settings: Settings, expected: int) -> list[bytes]:
    msgs = consume_all(settings, Topics.from_settings(settings).usage, expected)
    return sorted(m.headers()[0][1] for m in msgs if (m.headers() or [(None, None)])[0][0] == REPLAY_HEADER)


def test_replay_resumes_from_its_position_and_marks_what_it_replayed(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    produce_dead_letters(settings, [NOT_JSON, NO_PLAN, NO_METER, NO_KEY])
    assert replay_position(settings) == {} and read_marks(settings) == {}

    assert cli(settings, "replay", "--tenant", "nobody", "--yes") == 0
    assert "replayed 2 events" in capsys.readouterr().out
    # dead-letter partitions: 0 holds NOT_JSON (never replayed by default: settled), 1 NO_PLAN and 3 NO_KEY
    # (replayed), 2 NO_METER (left out by the filter: the position stays before it)
    assert replay_position(settings) == {0: 1, 1: 1, 3: 1}
    assert set(read_marks(settings)) == {f"{USAGE}:1:5", f"{USAGE}:3:9"}

    assert cli(settings, "list") == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", rows["1:5"][-3])  # when it was replayed
    assert rows["2:7"][-3] == "-" and rows["0:3"][-3] == "-"
    assert cli(settings, "list", "--json", "--tenant", "nobody") == 0
    listed = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert all(r["replayed_at"] for r in listed) and len(listed) == 2

    # the next replay reads from the position: only NO_METER is left to send
    assert cli(settings, "replay", "--yes") == 0
    out = capsys.readouterr().out
    assert "1 dead letters to replay" in out and "replayed 1 events" in out and "2:7" in out
    assert replay_position(settings) == {0: 1, 1: 1, 2: 1, 3: 1}

    # a new letter arrives: a replay sends it alone
    produce_dead_letters(settings, [LATER])
    assert cli(settings, "replay", "--yes") == 0
    assert "replayed 1 events" in capsys.readouterr().out
    assert replay_position(settings) == {0: 1, 1: 2, 2: 1, 3: 1}

    # the whole topic again: every letter is marked, nothing is sent unless --again
    assert cli(settings, "replay", "--from-beginning", "--yes") == 0
    out = capsys.readouterr().out
    assert "0 dead letters to replay" in out and "4 already replayed skipped; --again sends them" in out
    assert _headers(settings, 4) == sorted(f"{USAGE}:{p}".encode() for p in ("1:5", "3:9", "2:7", "1:6"))

    assert cli(settings, "replay", "--from-beginning", "--again", "--position", "2:7", "--yes") == 0
    assert "replayed 1 events" in capsys.readouterr().out
    assert len(_headers(settings, 5)) == 5
