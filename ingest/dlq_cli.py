"""`meterstream dlq list|show|replay`: inspect dead letters and re-drive them once the catalog is fixed."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import orjson

from meterstream.ingest.dlq import (
    DeadLetterRecord,
    advance,
    commit_replay_position,
    is_replayable,
    letters,
    parse_position,
    read_dead_letters,
    read_marks,
    replay_dead_letters,
    replay_position,
    scan_dead_letters,
    select_positions,
    source_text,
)
from meterstream.ingest.topics import Topics
from meterstream.schemas.settings import Settings

_REASON_WIDTH = 60


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `dlq` and its subcommands; each sets `func(args, settings) -> int`."""
    dlq = subparsers.add_parser("dlq", help="inspect and replay dead letters (read-only until `replay`)")
    sub = dlq.add_subparsers(dest="dlq_command", required=True)

    p = sub.add_parser("list", help="dead letters, one per source message")
    _add_filters(p)
    p.add_argument("--limit", type=int, default=None, help="at most N records")
    p.add_argument("--json", action="store_true", help="JSON lines (every field, raw included)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="one dead letter in full, raw input included")
    p.add_argument("position", metavar="POSITION", help="PARTITION:OFFSET of the source message")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("replay", help="re-produce dead-lettered events to the usage topic (charged once)")
    _add_filters(p)
    p.add_argument(
        "--position", action="extend", nargs="+", default=[], metavar="P", help="PARTITION:OFFSET of source messages"
    )
    p.add_argument("--dry-run", action="store_true", help="print what would be replayed, send nothing")
    p.add_argument("--include-unparseable", action="store_true", help="also replay raw input that is not JSON")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--from-beginning", action="store_true", help="read the whole topic, not from the replay position")
    p.add_argument("--again", action="store_true", help="also replay letters already replayed (marked)")
    p.set_defaults(func=cmd_replay)


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", choices=["parse", "rate"], default=None)
    p.add_argument("--reason", default=None, metavar="TEXT", help="reason contains TEXT (case-insensitive)")
    p.add_argument("--tenant", default=None)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    records = read_dead_letters(
        settings, stage=args.stage, reason_contains=args.reason, tenant=args.tenant, limit=args.limit
    )
    marks = read_marks(settings)
    if args.json:
        for r in records:
            replayed_at = marks.get(source_text(r), {}).get("replayed_at")
            print(orjson.dumps({**r.to_dict(), "replayed_at": replayed_at}).decode())
    else:
        print_table(records, marks)
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    try:
        position = parse_position(args.position)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    found = select_positions(read_dead_letters(settings), [position])
    if not found:
        print(f"no dead letter for source position {args.position}", file=sys.stderr)
        return 1
    print(orjson.dumps(found[0].to_dict(), option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    try:
        positions = [parse_position(p) for p in args.position]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
    print_table(todo)
    note = f" ({skipped} unparseable skipped; --include-unparseable sends them)" if skipped else ""
    if marked and not args.again:
        note += f" ({len(marked)} already replayed skipped; --again sends them)"
    print(f"{len(todo)} dead letters to replay to {usage}{note}")
    # settled: marked, or never replayed by default (not a JSON object); the position moves over them
    settled = set(marks) | {source_text(r) for r in letters(scanned) if not is_replayable(r)}
    if args.dry_run:
        return 0
    if not todo:
        commit_replay_position(settings, advance(scanned, settled, start))
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            print("refusing to replay without --yes when not interactive", file=sys.stderr)
            return 2
        if input(f"replay {len(todo)} events to {usage}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing replayed")
            return 1
    result = replay_dead_letters(settings, todo, include_unparseable=True, progress=_progress())
    commit_replay_position(settings, advance(scanned, settled | set(result.replayed), start))
    print(f"replayed {len(result.replayed)} events to {usage}")
    return 0


def _progress() -> Callable[[int, int], None]:
    """A progress printer for long runs (1,000+ events): at most one line every 2 s, on stderr."""
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if total >= 1000 and (done == total or now - last[0] >= 2.0):
            last[0] = now
            print(f"  {done}/{total} sent", file=sys.stderr)

    return report


def print_table(records: list[DeadLetterRecord], marks: dict[str, dict] | None = None) -> None:
    """Source position, stage, field, reason (shortened), when it was replayed (with `marks`), tenant, event id:
    one line each."""
    def replayed(r: DeadLetterRecord) -> list[str]:
        if marks is None:
            return []
        return [str(marks.get(source_text(r), {}).get("replayed_at") or "-")[:19]]

    marked = ["REPLAYED"] if marks is not None else []
    header = ("POSITION", "STAGE", "FIELD", "REASON", *marked, "TENANT", "EVENT ID")
    rows = [(r.position, r.stage, r.field, _shorten(r.reason), *replayed(r), r.tenant or "-", r.event_id or "-")
            for r in records]  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _REASON_WIDTH else text[: _REASON_WIDTH - 1] + "…"
