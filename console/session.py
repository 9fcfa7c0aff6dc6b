"""Log in with an API key (a form), log out. The key is kept in an HttpOnly, Secure, SameSite=Strict cookie; the
tenant is the key's. A key that is unknown, revoked or may not read (an `ingest` key) is refused on the form."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from meterstream.console.web import COOKIE, PREFIX, READ_ROLES, form_fields, page

router = APIRouter()
MAX_AGE = 8 * 3600  # a working day; the key itself is checked on every request


@router.get("/login")
async def login_form(request: Request) -> Response:
    return page(request, "login.html", None)


@router.post("/login")
async def login(request: Request) -> Response:
    token = ((await form_fields(request)).get("key") or [""])[0].strip()[:512]
    principal = await run_in_threadpool(request.app.state.keys.authenticate, token) if token else None
    if principal is None:
        return page(request, "login.html", None, 401, error="unknown or revoked API key")
    if principal.role not in READ_ROLES:
        return page(request, "login.html", None, 403,
                    error=f"this {principal.role} key may not read: sign in with a read or admin key")  # fmt: skip
    response = RedirectResponse(f"{PREFIX}/customers", status_code=303)
    response.set_cookie(COOKIE, token, max_age=MAX_AGE, path=PREFIX, secure=True, httponly=True, samesite="strict")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX, secure=True, httponly=True, samesite="strict")
    return response
