"""`meterstream serve` (the HTTP API) and `meterstream keys create|list|revoke` (API keys; they work while the API
runs: the same SQL store)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from meterstream.deploy.cli_common import call, table

if TYPE_CHECKING:  # kept out of `meterstream --help`
    from meterstream.schemas.settings import Settings


def _serve(args: Any, settings: Settings) -> int:
    import uvicorn

    from meterstream.api.app import create_app
    from meterstream.collector import settle_after_start

    host = args.host or settings.api_host
    port = args.port or settings.api_port
    app = create_app(settings)
    settle_after_start()  # tail latency: start-up's objects frozen, young collections rarer (meterstream/collector.py)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level=args.log_level, timeout_keep_alive=30)
    return 0


def _repo(settings: Settings):  # type: ignore[no-untyped-def]
    """The API keys' store: the same SQL store as a running API (SQLite in WAL mode, or PostgreSQL), so these
    commands work while it runs; a revoked key is refused from its next request on."""
    from meterstream.entities.db import make_engine, migrate, session_factory
    from meterstream.entities.keys import KeyRepository

    engine = make_engine(settings)
    migrate(settings, engine)
    return KeyRepository(session_factory(engine))


def _create(args: Any, settings: Settings) -> int:
    info, token = _repo(settings).create(args.tenant, args.role, args.name)  # ValueError: one line, exit 2
    print(f"key_id={info.key_id} tenant={info.tenant} role={info.role} name={info.name or ''}")
    print("the secret below is shown once; it is stored only as a hash:")
    print(token)
    return 0


def _list(args: Any, settings: Settings) -> int:
    rows = [[k.key_id, k.tenant, k.role, k.name or "", k.created_at.isoformat(),
             k.revoked_at.isoformat() if k.revoked_at else ""] for k in _repo(settings).list(args.tenant)]  # fmt: skip
    table("API keys (never their secrets)", ["key_id", "tenant", "role", "name", "created_at", "revoked_at"], rows,
          as_json=args.as_json)  # fmt: skip
    return 0


def _revoke(args: Any, settings: Settings) -> int:
    if _repo(settings).revoke(args.key_id):
        print(f"revoked {args.key_id}")
        return 0
    print(f"meterstream keys: error: no active key {args.key_id}", file=sys.stderr)
    return 1


def register(app: typer.Typer) -> None:
    @app.command("serve", help="run the HTTP API (uvicorn) against the configured Kafka, ClickHouse and database")
    def serve(
        host: Annotated[str | None, typer.Option(help="address to listen on (default: METERSTREAM_API_HOST, "
                                                      "127.0.0.1)")] = None,
        port: Annotated[int | None, typer.Option(min=1, max=65535, help="port (default: METERSTREAM_API_PORT, "
                                                 "8080)")] = None,
        log_level: Annotated[Literal["critical", "error", "warning", "info", "debug"], typer.Option()] = "info",
    ) -> int:  # fmt: skip
        return call(_serve, locals())

    keys = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke (works while the API runs)")
    app.add_typer(keys, name="keys")

    @keys.command("create", help="create a key; its secret is printed alone on the last line")
    def create(tenant: Annotated[str, typer.Option()], role: Annotated[Literal["admin", "ingest", "read"],
               typer.Option()], name: Annotated[str | None, typer.Option()] = None) -> int:  # fmt: skip
        return call(_create, locals())

    @keys.command("list", help="list keys (never their secrets)")
    def list_(tenant: Annotated[str | None, typer.Option()] = None,
              as_json: Annotated[bool, typer.Option("--json", help="a JSON array instead of a table")] = False,
              ) -> int:  # fmt: skip
        return call(_list, locals())

    @keys.command("revoke", help="revoke a key: refused from its next request on")
    def revoke(key_id: Annotated[str, typer.Argument()]) -> int:
        return call(_revoke, locals())
