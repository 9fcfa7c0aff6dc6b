"""What every console page shares: the templates, the signed-in principal, page answers, and `mount(app)`.

The console is served by the API process (`meterstream up`, `meterstream serve`) under /console. A page needs a
session: the API key given on the login form, kept in an HttpOnly, Secure, SameSite=Strict cookie and checked
against the key store on every request (a revoked key signs out at once). The tenant is the key's; every read
below is scoped by it, through the API's own query functions (api/queries.py, entities/).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

from meterstream.entities.keys import Principal

PREFIX = "/console"
COOKIE = "meterstream_console"
HERE = Path(__file__).parent
templates = Jinja2Templates(env=Environment(loader=FileSystemLoader(HERE / "templates"),
                                            autoescape=select_autoescape(default=True)))  # fmt: skip
READ_ROLES = ("admin", "read")


class LoginRequired(Exception):
    """No valid session: the browser is sent to the login page."""


def principal_of(request: Request) -> Principal | None:
    """The principal of the session cookie's key (None: no cookie, or an unknown or revoked key)."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    principal = request.app.state.keys.authenticate(token)
    if principal is None or principal.role not in READ_ROLES:
        return None
    return principal


def signed_in(request: Request) -> Principal:
    principal = principal_of(request)
    if principal is None:
        raise LoginRequired
    return principal


User = Annotated[Principal, Depends(signed_in)]


# tenant data: never cached; no script runs on a console page and none may be framed by another site
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
}


def page(request: Request, template: str, user: Principal | None, status_code: int = 200, **context: Any) -> Response:
    return templates.TemplateResponse(request, template, {"user": user, "prefix": PREFIX, **context},
                                      status_code=status_code, headers=HEADERS)  # fmt: skip


def error_page(request: Request, user: Principal | None, status_code: int, message: str) -> Response:
    return page(request, "error.html", user, status_code, message=message)


def current_period(now: datetime | None = None) -> str:
    """The current UTC calendar month, YYYY-MM (the streamed totals' period)."""
    return (now or datetime.now(UTC)).strftime("%Y-%m")


async def form_fields(request: Request, max_bytes: int = 65536) -> dict[str, list[str]]:
    """The fields of a urlencoded form post (the console's forms send nothing else); a body over `max_bytes`
    or of another type reads as no fields."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return {}
    body = await request.body()
    if len(body) > max_bytes:
        return {}
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def same_origin(request: Request) -> bool:
    """A form post from this site (with SameSite=Strict cookies, a second guard against cross-site posts)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin.rstrip("/") == f"{request.url.scheme}://{request.url.netloc}"


def mount(app: FastAPI) -> None:
    """Add the console's pages to the API app (not in the OpenAPI document)."""
    from meterstream.console import customers, dead_letters, health, invoices, session

    for module in (session, customers, invoices, dead_letters, health):
        app.include_router(module.router, prefix=PREFIX, include_in_schema=False)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")

    async def _login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"{PREFIX}/login", status_code=303)

    app.add_exception_handler(LoginRequired, _login)

    @app.get(PREFIX, include_in_schema=False, response_class=HTMLResponse)
    async def _home() -> Response:
        return RedirectResponse(f"{PREFIX}/customers", status_code=303)
