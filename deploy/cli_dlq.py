"""`meterstream dlq list|show|replay`: inspect dead letters and re-drive them once the catalog is fixed
(the reading, marking and replaying are ingest/dlq.py's; this is the command line)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from meterstream.deploy.cli_common import Handler, aligned, call, progress, table

if TYPE_CHECKING:  # kept out of `meterstream --help`
    from meterstream.ingest.dlq import DeadLetterRecord
    from meterstream.schemas.settings import Settings

_REASON_WIDTH = 60
_PROBE_SECONDS = 5.0


def broker_answers(settings: Settings) -> None:
    """Refuse (RuntimeError: one line, exit 2) when the broker does not answer a metadata request: dead letters
    live in Kafka, and without this the command waited, printed librdkafka's connection log line by line and
    ended with a KafkaException worded as a bug. The probe logs nothing (log_level 0)."""
    from confluent_kafka import Consumer, KafkaException

    probe = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "meterstream-dlq-probe",
                      "enable.auto.commit": False, "log_level": 0})  # fmt: skip
    try:
        probe.list_topics(timeout=_PROBE_SECONDS)
    except KafkaException as exc:
        raise RuntimeError(unreachable(settings, exc)) from None
    finally:
        probe.close()


def unreachable(settings: Settings, exc: BaseException) -> str:
    return (f"the Kafka broker at {settings.bootstrap} cannot be reached ({kafka_reason(exc)}): dead letters are "
            "read from Kafka; start it (meterstream kafka start, or meterstream up) or set "
            "METERSTREAM_KAFKA_BOOTSTRAP")  # fmt: skip


def kafka_reason(exc: BaseException) -> str:
    err = exc.args[0] if exc.args else exc
    return err.str() if hasattr(err, "str") else str(err)


def on_kafka(handler: Handler) -> Handler:
    """`handler`, whose Kafka failures on the way (the broker gone mid-command, a read that timed out) are the
    one-line user error naming the broker and the reason, not an unexpected exception worded as a bug."""

    def run(args: Any, settings: Settings) -> int:
        from confluent_kafka import KafkaException

        try:
            return handler(args, settings)
        except (KafkaException, TimeoutError) as exc:
            raise RuntimeError(f"the Kafka broker at {settings.bootstrap} failed: {kafka_reason(exc)}") from None

    return run


def cmd_list(args: Any, settings: Settings) -> int:
    import orjson

    from meterstream.ingest.dlq import read_dead_letters, read_marks, source_text

    broker_answers(settings)
    records = read_dead_letters(settings, stage=args.stage, reason_contains=args.reason, tenant=args.tenant,
                                limit=args.limit)  # fmt: skip
    marks = read_marks(settings)
    if args.json:  # JSON lines: every field, raw included
        for r in records:
            replayed_at = marks.get(source_text(r), {}).get("replayed_at")
            print(orjson.dumps({**r.to_dict(), "replayed_at": replayed_at}).decode())
    else:
        print_table(records, marks)
    return 0


def cmd_show(args: Any, settings: Settings) -> int:
    import orjson

    from meterstream.ingest.dlq import parse_position, read_dead_letters, select_positions

    position = parse_position(args.position)  # ValueError: one line naming the position, exit 2
    broker_answers(settings)
    found = select_positions(read_dead_letters(settings), [position])
    if not found:
        print(f"meterstream dlq: error: no dead letter for source position {args.position}", file=sys.stderr)
        return 1
    print(orjson.dumps(found[0].to_dict(), option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_replay(args: Any, settings: Settings) -> int:
    from meterstream.ingest.dlq import (
        advance,
        commit_replay_position,
        is_replayable,
        letters,
        parse_position,
        read_marks,
        replay_dead_letters,
        replay_position,
        scan_dead_letters,
        select_positions,
        source_text,
    )
    from meterstream.ingest.topics import Topics

    positions = [parse_position(p) for p in args.position]  # ValueError: one line naming the position, exit 2
    broker_answers(settings)
    # from the replay position (the group meterstream-dlq-replay), skipping letters already replayed (marked)
    start = {} if args.from_beginning else replay_position(settings)
    scanned = scan_dead_letters(settings, start)
    marks = read_marks(settings)
    records = letters(scanned, stage=args.stage, reason_contains=args.reason, tenant=args.tenant)
    if positions:
        records = select_positions(records, positions)
    marked = [r for r in records if source_text(r) in marks]
    if not args.again:
        records = [r for r in records if source_text(r) not in marks]
    todo = [r for r in records if args.include_unparseable or is_replayable(r)]
    skipped = len(records) - len(todo)
    usage = Topics.from_settings(settings).usage
    as_json = getattr(args, "json", False)
    answer = {
        "topic": usage,
        "to_replay": [source_text(r) for r in todo],
        "skipped_unparseable": skipped,
        "skipped_replayed": 0 if args.again else len(marked),
        "dry_run": bool(args.dry_run),
        "replayed": [],
    }
    if not as_json:
        print_table(todo)
        note = f" ({skipped} unparseable skipped; --include-unparseable sends them)" if skipped else ""
        if marked and not args.again:
            note += f" ({len(marked)} already replayed skipped; --again sends them)"
        print(f"{len(todo)} dead letters to replay to {usage}{note}")
    # settled: marked, or never replayed by default (not a JSON object); the position moves over them
    settled = set(marks) | {source_text(r) for r in letters(scanned) if not is_replayable(r)}
    if args.dry_run or not todo:
        if not args.dry_run:
            commit_replay_position(settings, advance(scanned, settled, start))
        _answer(answer, as_json)
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            print("meterstream dlq: error: refusing to replay without --yes when not interactive", file=sys.stderr)
            return 2
        prompt = f"replay {len(todo)} events to {usage}? [y/N] "
        if as_json:  # stdout is the JSON answer's
            print(prompt, end="", file=sys.stderr, flush=True)
        if input("" if as_json else prompt).strip().lower() not in ("y", "yes"):
            print("nothing replayed", file=sys.stderr if as_json else sys.stdout)
            return 1
    with progress(f"replaying to {usage}", len(todo)) as advance_bar:  # a bar on a terminal only
        result = replay_dead_letters(settings, todo, include_unparseable=True, progress=advance_bar)
    commit_replay_position(settings, advance(scanned, settled | set(result.replayed), start))
    answer["replayed"] = list(result.replayed)
    if not as_json:
        print(f"replayed {len(result.replayed)} events to {usage}")
    _answer(answer, as_json)
    return 0


def _answer(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        import json

        print(json.dumps(answer))


def print_table(records: list[DeadLetterRecord], marks: dict[str, dict] | None = None) -> None:
    """Source position, stage, field, reason (shortened), when it was replayed (with `marks`), tenant (the letter's,
    else its Kafka key's), event id: a rich table on a terminal, aligned columns when piped."""
    from meterstream.ingest.dlq import letter_tenant, source_text

    def replayed(r: DeadLetterRecord) -> list[str]:
        if marks is None:
            return []
        return [str(marks.get(source_text(r), {}).get("replayed_at") or "-")[:19]]

    header = ["POSITION", "STAGE", "FIELD", "REASON", *(["REPLAYED"] if marks is not None else []), "TENANT",
              "EVENT ID"]  # fmt: skip
    rows = [[r.position, r.stage, r.field, _shorten(r.reason), *replayed(r), letter_tenant(r) or "-",
             r.event_id or "-"] for r in records]  # fmt: skip
    table("dead letters", header, rows, plain=aligned)


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _REASON_WIDTH else text[: _REASON_WIDTH - 1] + "…"


Stage = Annotated[
    Literal["api", "parse", "rate"] | None,
    typer.Option(help="only letters of this stage (api: refused at the HTTP API's reception)"),
]
Reason = Annotated[str | None, typer.Option(metavar="TEXT", help="reason contains TEXT (case-insensitive)")]
Tenant = Annotated[str | None, typer.Option(help="only this tenant's (its field, or its Kafka key's tenant/...)")]


def register(app: typer.Typer) -> None:
    dlq = typer.Typer(no_args_is_help=True, help="inspect and replay dead letters (read-only until `replay`)")
    app.add_typer(dlq, name="dlq")

    @dlq.command("list", help="dead letters, one per source message")
    def list_(stage: Stage = None, reason: Reason = None, tenant: Tenant = None,
              limit: Annotated[int | None, typer.Option(min=0, help="at most N records")] = None,
              json: Annotated[bool, typer.Option("--json", help="JSON lines (every field, raw included)")] = False,
              ) -> int:  # fmt: skip
        return call(on_kafka(cmd_list), locals())

    @dlq.command("show", help="one dead letter in full, raw input included")
    def show(position: Annotated[str, typer.Argument(metavar="POSITION", help="PARTITION:OFFSET of the source "
                                                                              "message")]) -> int:  # fmt: skip
        return call(on_kafka(cmd_show), locals())

    @dlq.command("replay", help="re-produce dead-lettered events to the usage topic (charged once)")
    def replay(
        more: Annotated[list[str] | None, typer.Argument(metavar="[POSITION]...", help="more PARTITION:OFFSET "
                                                         "(`--position 1:5 2:7` works as before)")] = None,
        stage: Stage = None, reason: Reason = None, tenant: Tenant = None,
        position: Annotated[list[str] | None, typer.Option(metavar="P", help="PARTITION:OFFSET of source messages "
                                                           "(repeatable)")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="print what would be replayed, send nothing")] = False,
        include_unparseable: Annotated[bool, typer.Option("--include-unparseable", help="also replay raw input "
                                                          "that is not JSON")] = False,
        yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
        from_beginning: Annotated[bool, typer.Option("--from-beginning", help="read the whole topic, not from the "
                                                     "replay position")] = False,
        again: Annotated[bool, typer.Option("--again", help="also replay letters already replayed (marked)")] = False,
        json: Annotated[bool, typer.Option("--json", help="one JSON object: what was to replay, skipped, replayed")]
        = False,
    ) -> int:  # fmt: skip
        params = {**locals(), "position": [*(position or []), *(more or [])]}
        return call(on_kafka(cmd_replay), params)
