"""`meterstream webhooks add|list|disable|enable|deliveries|replay|events`: signed webhook endpoints of a tenant
and their deliveries, on the entity store (docs/webhooks.md). Registered in deploy/cli.py by `register(app)`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import import_module
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from meterstream.deploy.cli_common import aligned, call, table

if TYPE_CHECKING:  # kept out of `meterstream --help`
    from meterstream.schemas.settings import Settings


def _one_of(loader: str) -> Callable[[Any], Any]:
    """A typer callback: each value must be one of `module:NAME`'s (imported when the command runs, not at --help)."""

    def check(value: Any) -> Any:
        if value is None:
            return value
        module, name = loader.split(":")
        allowed = getattr(import_module(module), name)
        for v in value if isinstance(value, list) else [value]:
            if v not in allowed:
                raise typer.BadParameter(f"{v!r} is not one of {', '.join(allowed)}")
        return value

    return check


Tenant = Annotated[str, typer.Option()]
Endpoint = Annotated[str | None, typer.Option(metavar="ENDPOINT_ID", help="only this endpoint's")]
Json = Annotated[bool, typer.Option("--json", help="JSON instead of a table")]
STATUSES = "meterstream.webhooks.deliveries:STATUSES"


def register(app: typer.Typer) -> None:
    """Add `webhooks` and its subcommands."""
    webhooks = typer.Typer(no_args_is_help=True, help="signed webhook endpoints of a tenant, deliveries, replay")
    app.add_typer(webhooks, name="webhooks")

    def run(name: str, fn: Callable[[Any, Settings], int], params: dict[str, Any], **extra: Any) -> int:
        return call(_guarded(fn), params, webhooks_action=name, **extra)

    @webhooks.command("add", help="register an endpoint; prints its id and its secret (whsec_...) once")
    def add(
        tenant: Tenant,
        url: Annotated[str, typer.Option(help="http(s) URL that receives the POSTs")],
        event: Annotated[list[str] | None, typer.Option(metavar="TYPE", callback=_one_of(
            "meterstream.webhooks.events:EVENT_TYPES"), help="only these event types (repeatable; "
            "default all but the opt-in session.* kinds; see docs/webhooks.md)")] = None,
        description: Annotated[str, typer.Option()] = "",
    ) -> int:  # fmt: skip
        return run("add", _add, {**locals(), "event": event or []})

    @webhooks.command("list", help="the tenant's endpoints (secrets shown with --show-secrets)")
    def list_(tenant: Tenant, show_secrets: Annotated[bool, typer.Option("--show-secrets")] = False,
              json: Json = False) -> int:  # fmt: skip
        return run("list", _list, locals())

    @webhooks.command("disable", help="stop sending new events to an endpoint")
    def disable(tenant: Tenant, endpoint: Annotated[str, typer.Argument(metavar="ENDPOINT_ID")]) -> int:
        return run("disable", _set_enabled, locals(), enabled=False)

    @webhooks.command("enable", help="send again")
    def enable(tenant: Tenant, endpoint: Annotated[str, typer.Argument(metavar="ENDPOINT_ID")]) -> int:
        return run("enable", _set_enabled, locals(), enabled=True)

    @webhooks.command("deliveries", help="deliveries of the tenant, newest first (status, attempts, last error)")
    def deliveries(
        tenant: Tenant,
        status: Annotated[str | None, typer.Option(callback=_one_of(STATUSES))] = None,
        endpoint: Endpoint = None,
        limit: Annotated[int, typer.Option(min=0)] = 50,
        json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
    ) -> int:
        return run("deliveries", _deliveries, locals())

    @webhooks.command("replay", help="put dead deliveries (or chosen ones) back in the queue, due now")
    def replay(
        tenant: Tenant,
        delivery: Annotated[list[int] | None, typer.Option(metavar="ID", help="these (repeatable)")] = None,
        endpoint: Endpoint = None,
        status: Annotated[str, typer.Option(callback=_one_of(STATUSES), help="which to replay without --delivery")]
        = "dead",
    ) -> int:  # fmt: skip
        return run("replay", _replay, locals())

    @webhooks.command("lago-keys", help="the keys that verify the tenant's Lago-format webhooks (docs/lago.md)")
    def lago_keys(tenant: Tenant) -> int:
        return run("lago-keys", _lago_keys, locals())

    @webhooks.command("events", help="the tenant's newest lifecycle events (the outbox)")
    def events(tenant: Tenant, limit: Annotated[int, typer.Option(min=0)] = 50, json: Json = False) -> int:
        return run("events", _events, locals())


def _guarded(fn: Callable[[Any, Settings], int]) -> Callable[[Any, Settings], int]:
    """Bad input and unknown ids: one line naming the field and the reason, exit 2."""

    def run(args: Any, settings: Settings) -> int:
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


def _table(title: str, headers: list[str], rows: list[list[str]], as_json: bool = False) -> None:
    """A rich table on a terminal, aligned columns when piped, a JSON array with --json."""
    table(title, headers, rows, as_json=as_json, plain=aligned)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _add(args: Any, settings: Settings) -> int:
    from meterstream.webhooks.endpoints import register

    ep = register(_sessions(settings), args.tenant, args.url, event_types=args.event, description=args.description)
    print(f"endpoint {ep.endpoint_id} -> {ep.url} ({', '.join(ep.event_types) or 'all events'})")
    print("secret (give it to the receiver; it verifies every POST with it):")
    print(ep.secret)
    return 0


def _list(args: Any, settings: Settings) -> int:
    from meterstream.webhooks.endpoints import list_endpoints

    rows = [[ep.endpoint_id, ep.url, "yes" if ep.enabled else "no", ",".join(ep.event_types) or "all",
             _secret(ep, args.show_secrets), ep.description, ep.format]
            for ep in list_endpoints(_sessions(settings), args.tenant)]  # fmt: skip
    _table(
        f"webhook endpoints of {args.tenant}",
        ["endpoint", "url", "enabled", "events", "secret", "description", "format"],
        rows,
        args.json,
    )
    return 0


def _secret(ep: Any, show: bool) -> str:
    """A standard endpoint's secret (cut unless shown); a Lago-format one signs with the tenant's Lago keys."""
    if ep.format != "standard":
        return f"{ep.format} {ep.signature_algo} (webhooks lago-keys)"
    return ep.secret if show else ep.secret[:10] + "..."


def _lago_keys(args: Any, settings: Settings) -> int:
    from meterstream.webhooks.lago_keys import keys_for
    from meterstream.webhooks.lago_signing import public_pem

    keys = keys_for(_sessions(settings), args.tenant)
    print("HMAC key (endpoints with signature_algo hmac: base64 of HMAC-SHA256 of the body, keyed by it):")
    print(keys.hmac_key)
    print("public key (endpoints with signature_algo jwt: verifies the RS256 JWT; GET /api/v1/webhooks/public_key):")
    print(public_pem(keys).decode().rstrip())
    return 0


def _set_enabled(args: Any, settings: Settings) -> int:
    from meterstream.webhooks.endpoints import set_enabled

    ep = set_enabled(_sessions(settings), args.tenant, args.endpoint, args.enabled)
    print(f"endpoint {ep.endpoint_id} {'enabled' if ep.enabled else 'disabled'}")
    return 0


def _deliveries(args: Any, settings: Settings) -> int:
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
    _table(f"webhook deliveries of {args.tenant}", ["id", "event", "type", "endpoint", "status", "attempts", "next_at",
                                                    "http", "last_error"], rows)  # fmt: skip
    return 0


def _replay(args: Any, settings: Settings) -> int:
    from meterstream.webhooks.deliveries import replay

    done = replay(_sessions(settings), args.tenant, datetime.now(UTC), delivery_ids=args.delivery,
                  endpoint_id=args.endpoint, status=args.status)  # fmt: skip
    if args.delivery and not done:  # ids the user named: an unknown one is an error, not "nothing to do"
        ids = ", ".join(str(i) for i in args.delivery)
        raise ValueError(f"delivery: no delivery {ids} of tenant {args.tenant!r} matched (see `webhooks deliveries`)")
    print(f"replaying {len(done)} deliveries: {', '.join(str(d.id) for d in done) or 'none matched'}")
    return 0


def _events(args: Any, settings: Settings) -> int:
    from meterstream.webhooks.outbox import events

    rows = [[str(e.seq), e.event_id, e.type, e.subject, _when(e.created_at), _when(e.fanned_at),
             _when(e.published_at)] for e in events(_sessions(settings), args.tenant, args.limit)]  # fmt: skip
    _table(f"lifecycle events of {args.tenant}", ["seq", "event", "type", "subject", "created", "fanned_out",
                                                  "on_kafka"], rows, args.json)  # fmt: skip
    return 0


__all__ = ["register"]
