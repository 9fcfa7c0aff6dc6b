"""`meterstream webhooks add|list|disable|enable|deliveries|replay|events`: signed webhook endpoints of a tenant
and their deliveries, on the entity store (docs/webhooks.md). Registered in deploy/cli.py by `register(sub)`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from meterstream.schemas.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `webhooks` and its subcommands; each sets `func(args, settings) -> int`."""
    from meterstream.webhooks.deliveries import STATUSES
    from meterstream.webhooks.events import EVENT_TYPES

    p = subparsers.add_parser("webhooks", help="signed webhook endpoints of a tenant, deliveries, replay")
    sub = p.add_subparsers(dest="webhooks_action", required=True)

    c = sub.add_parser("add", help="register an endpoint; prints its id and its secret (whsec_...) once")
    c.add_argument("--tenant", required=True)
    c.add_argument("--url", required=True, help="http(s) URL that receives the POSTs")
    c.add_argument("--event", action="append", default=[], choices=EVENT_TYPES, metavar="TYPE",
                   help=f"only these event types (repeatable; default all): {', '.join(EVENT_TYPES)}")  # fmt: skip
    c.add_argument("--description", default="")
    c.set_defaults(func=_guarded(_add))

    c = sub.add_parser("list", help="the tenant's endpoints (secrets shown with --show-secrets)")
    c.add_argument("--tenant", required=True)
    c.add_argument("--show-secrets", action="store_true")
    c.set_defaults(func=_guarded(_list))

    for name, what in (("disable", "stop sending new events to an endpoint"), ("enable", "send again")):
        c = sub.add_parser(name, help=what)
        c.add_argument("--tenant", required=True)
        c.add_argument("endpoint", metavar="ENDPOINT_ID")
        c.set_defaults(func=_guarded(_set_enabled), enabled=name == "enable")

    c = sub.add_parser("deliveries", help="deliveries of the tenant, newest first (status, attempts, last error)")
    c.add_argument("--tenant", required=True)
    c.add_argument("--status", choices=STATUSES, default=None)
    c.add_argument("--endpoint", default=None, metavar="ENDPOINT_ID")
    c.add_argument("--limit", type=int, default=50)
    c.add_argument("--json", action="store_true", help="JSON lines")
    c.set_defaults(func=_guarded(_deliveries))

    c = sub.add_parser("replay", help="put dead deliveries (or chosen ones) back in the queue, due now")
    c.add_argument("--tenant", required=True)
    c.add_argument("--delivery", type=int, action="append", default=None, metavar="ID", help="these (repeatable)")
    c.add_argument("--endpoint", default=None, metavar="ENDPOINT_ID", help="only this endpoint's")
    c.add_argument("--status", choices=STATUSES, default="dead", help="which to replay without --delivery")
    c.set_defaults(func=_guarded(_replay))

    c = sub.add_parser("events", help="the tenant's newest lifecycle events (the outbox)")
    c.add_argument("--tenant", required=True)
    c.add_argument("--limit", type=int, default=50)
    c.set_defaults(func=_guarded(_events))


def _guarded(fn: Callable[[argparse.Namespace, Settings], int]) -> Callable[[argparse.Namespace, Settings], int]:
    """Bad input and unknown ids: one line naming the field and the reason, exit 2."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        from meterstream.entities.common import Invalid, NotFound

        try:
            return fn(args, settings)
        except (Invalid, NotFound) as exc:
            print(f"meterstream webhooks {args.webhooks_action}: error: {exc}", file=sys.stderr)
            return 2

    return run


def _sessions(settings: Settings):  # type: ignore[no-untyped-def]
    from meterstream.entities.db import make_engine, migrate, session_factory

    engine = make_engine(settings)
    migrate(settings, engine)
    return session_factory(engine)


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for line in (headers, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _add(args: argparse.Namespace, settings: Settings) -> int:
    from meterstream.webhooks.endpoints import register

    ep = register(_sessions(settings), args.tenant, args.url, event_types=args.event, description=args.description)
    print(f"endpoint {ep.endpoint_id} -> {ep.url} ({', '.join(ep.event_types) or 'all events'})")
    print("secret (give it to the receiver; it verifies every POST with it):")
    print(ep.secret)
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from meterstream.webhooks.endpoints import list_endpoints

    rows = [[ep.endpoint_id, ep.url, "yes" if ep.enabled else "no", ",".join(ep.event_types) or "all",
             ep.secret if args.show_secrets else ep.secret[:10] + "...", ep.description]
            for ep in list_endpoints(_sessions(settings), args.tenant)]  # fmt: skip
    _table(["endpoint", "url", "enabled", "events", "secret", "description"], rows)
    return 0


def _set_enabled(args: argparse.Namespace, settings: Settings) -> int:
    from meterstream.webhooks.endpoints import set_enabled

    ep = set_enabled(_sessions(settings), args.tenant, args.endpoint, args.enabled)
    print(f"endpoint {ep.endpoint_id} {'enabled' if ep.enabled else 'disabled'}")
    return 0


def _deliveries(args: argparse.Namespace, settings: Settings) -> int:
    from meterstream.webhooks.deliveries import list_deliveries

    found = list_deliveries(_sessions(settings), args.tenant, status=args.status, endpoint_id=args.endpoint,
                            limit=args.limit)  # fmt: skip
    if args.json:
        for d in found:
            print(orjson.dumps(d.__dict__).decode())
        return 0
    rows = [[str(d.id), d.event_id, d.event_type, d.endpoint_id, d.status, str(d.attempts),
             _when(d.next_at) if d.status == "pending" else "", str(d.last_status or ""), (d.last_error or "")[:60]]
            for d in found]  # fmt: skip
    _table(["id", "event", "type", "endpoint", "status", "attempts", "next_at", "http", "last_error"], rows)
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from meterstream.webhooks.deliveries import replay

    done = replay(_sessions(settings), args.tenant, datetime.now(UTC), delivery_ids=args.delivery,
                  endpoint_id=args.endpoint, status=args.status)  # fmt: skip
    if args.delivery and not done:  # ids the user named: an unknown one is an error, not "nothing to do"
        ids = ", ".join(str(i) for i in args.delivery)
        raise ValueError(f"delivery: no delivery {ids} of tenant {args.tenant!r} matched (see `webhooks deliveries`)")
    print(f"replaying {len(done)} deliveries: {', '.join(str(d.id) for d in done) or 'none matched'}")
    return 0


def _events(args: argparse.Namespace, settings: Settings) -> int:
    from meterstream.webhooks.outbox import events

    rows = [[str(e.seq), e.event_id, e.type, e.subject, _when(e.created_at), _when(e.fanned_at),
             _when(e.published_at)] for e in events(_sessions(settings), args.tenant, args.limit)]  # fmt: skip
    _table(["seq", "event", "type", "subject", "created", "fanned_out", "on_kafka"], rows)
    return 0


__all__ = ["register"]
