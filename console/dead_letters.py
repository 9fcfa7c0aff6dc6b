"""The tenant's dead letters (ingest/dlq.py: read back from the topic, one per source position) with their replay
marks, and replay from the page (an admin key): the selected letters are re-driven with `replay_dead_letters`,
which marks them once Kafka acknowledged the events (the processor's dedup charges each event once).

A letter is the tenant's when it names the tenant, or, for a parse error that could not name it, when its Kafka
key (`tenant/customer`) does."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from meterstream.console.web import PREFIX, User, error_page, form_fields, page, same_origin
from meterstream.ingest import dlq

router = APIRouter()
RAW_SHOWN = 160


def tenant_letters(settings: Any, tenant: str) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    """(the tenant's dead letters in topic order, replay marks by source position)."""
    records = [r for r in dlq.letters(dlq.scan_dead_letters(settings)) if dlq.letter_tenant(r) == tenant]
    return records, dlq.read_marks(settings)


@router.get("/dead-letters")
async def letters_page(request: Request, user: User, replayed: int | None = None) -> Response:
    settings = request.app.state.settings
    try:
        records, marks = await run_in_threadpool(tenant_letters, settings, user.tenant)
    except Exception as exc:  # Kafka unreachable or slow: the page says so
        return error_page(request, user, 503, f"the dead-letter topic could not be read: {str(exc)[:300]}")
    rows = [{"r": r, "source": dlq.source_text(r), "mark": marks.get(dlq.source_text(r)),
             "replayable": dlq.is_replayable(r), "raw": r.raw if len(r.raw) <= RAW_SHOWN else r.raw[:RAW_SHOWN] + "…"}
            for r in records]  # fmt: skip
    return page(request, "dead_letters.html", user, rows=rows, replayed=replayed, admin=user.role == "admin")


def _replay(settings: Any, tenant: str, sources: set[str]) -> int:
    records, _ = tenant_letters(settings, tenant)
    chosen = [r for r in records if dlq.source_text(r) in sources]
    return len(dlq.replay_dead_letters(settings, chosen).replayed)


@router.post("/dead-letters/replay")
async def replay(request: Request, user: User) -> Response:
    if user.role != "admin":
        return error_page(request, user, 403, f"this {user.role} key may not replay: sign in with an admin key")
    if not same_origin(request):
        return error_page(request, user, 403, "a replay is posted from the console's own page")
    source = (await form_fields(request)).get("source")
    if not source:
        return error_page(request, user, 400, "source: select at least one dead letter")
    try:
        n = await run_in_threadpool(_replay, request.app.state.settings, user.tenant, set(source))
    except Exception as exc:
        return error_page(request, user, 503, f"the replay failed: {str(exc)[:300]}")
    return RedirectResponse(f"{PREFIX}/dead-letters?replayed={n}", status_code=303)
