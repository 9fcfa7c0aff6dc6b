"""CLI commands of the API: `meterstream serve` and `meterstream keys create|list|revoke`.

The key commands open the same SQL store as a running API (SQLite in WAL mode, or PostgreSQL), so they
work while it runs; a revoked key is refused from its next request on.
"""

from __future__ import annotations

import argparse
import gc
import sys

from meterstream.schemas.settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from meterstream.api.app import create_app

    host = args.host or settings.api_host
    port = args.port or settings.api_port
    app = create_app(settings)
    # Tail latency: a 1,000-event request allocates ~10^5 objects, so the default collector runs its
    # full (generation 2) passes over every live object — the app, pydantic, SQLAlchemy — every few
    # requests. Freeze what start-up built (never garbage) and collect the young generation less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level=args.log_level, timeout_keep_alive=30)
    return 0


def _repo(settings: Settings):  # type: ignore[no-untyped-def]
    from meterstream.entities.db import make_engine, migrate, session_factory
    from meterstream.entities.keys import KeyRepository

    engine = make_engine(settings)
    migrate(settings, engine)
    return KeyRepository(session_factory(engine))


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    repo = _repo(settings)
    if args.keys_action == "create":
        try:
            info, token = repo.create(args.tenant, args.role, args.name)
        except ValueError as exc:
            raise RuntimeError(str(exc)) from None
        print(f"key_id={info.key_id} tenant={info.tenant} role={info.role} name={info.name or ''}")
        print("the secret below is shown once; it is stored only as a hash:")
        print(token)
        return 0
    if args.keys_action == "list":
        rows = repo.list(args.tenant)
        print("key_id\ttenant\trole\tname\tcreated_at\trevoked_at")
        for k in rows:
            revoked = k.revoked_at.isoformat() if k.revoked_at else ""
            print(f"{k.key_id}\t{k.tenant}\t{k.role}\t{k.name or ''}\t{k.created_at.isoformat()}\t{revoked}")
        return 0
    if repo.revoke(args.key_id):
        print(f"revoked {args.key_id}")
        return 0
    print(f"meterstream keys: error: no active key {args.key_id}", file=sys.stderr)
    return 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP API (uvicorn) against the configured Kafka, ClickHouse and database")
    p.add_argument("--host", default=None, help="address to listen on (default: METERSTREAM_API_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: METERSTREAM_API_PORT, 8080)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=_serve)

    p = sub.add_parser("keys", help="API keys: create, list, revoke (works while the API runs)")
    ks = p.add_subparsers(dest="keys_action", required=True)
    c = ks.add_parser("create", help="create a key; its secret is printed alone on the last line")
    c.add_argument("--tenant", required=True)
    c.add_argument("--role", required=True, choices=["admin", "ingest", "read"])
    c.add_argument("--name", default=None)
    c = ks.add_parser("list", help="list keys (never their secrets)")
    c.add_argument("--tenant", default=None)
    c = ks.add_parser("revoke", help="revoke a key: refused from its next request on")
    c.add_argument("key_id")
    p.set_defaults(func=_keys)
