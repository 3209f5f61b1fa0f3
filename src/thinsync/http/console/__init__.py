"""The web console (L5 adapter): server-rendered pages (Jinja2) with htmx for live parts.

Mounted by http/app.py at /console as its own small ASGI app, so it renders its own HTML errors
and the REST API keeps its JSON ones. It calls the same services as the API and has no write
path of its own.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from thinsync.errors import ThinsyncError
from thinsync.http.console import backups, license, objects, serverlist, sync, terminals, top
from thinsync.http.console.web import BASE, HERE, Console, LoginRequired, is_htmx
from thinsync.http.context import Services

log = logging.getLogger(__name__)

__all__ = ["BASE", "Console", "create_console"]


def create_console(svc: Services) -> tuple[FastAPI, Console]:
    """The console app (to mount at BASE) and its state (started and stopped with the server)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    state = Console(svc)
    app.state.console = state
    app.state.services = svc
    for module in (top, objects, serverlist, sync, terminals, backups, license):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _install_errors(app, state)
    return app, state


def _error(state: Console, request: Request, status: int, title: str, message: str) -> Response:
    if is_htmx(request):
        # htmx does not swap 4xx/5xx answers (and logs them): answer 200 and show the message in
        # the page's flash area instead.
        body = state.html("_flash.html", message=message, level="error")
        return HTMLResponse(body, headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})
    body = state.html("error.html", status=status, title=title, message=message, help="error")
    return HTMLResponse(body, status_code=status)


def _install_errors(app: FastAPI, state: Console) -> None:
    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        url = f"{BASE}/login?next={quote(target)}"
        if is_htmx(request):
            return Response(status_code=204, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)

    @app.exception_handler(ThinsyncError)
    async def _ours(request: Request, exc: ThinsyncError) -> Response:
        if exc.status >= 500:
            log.error("console %s %s failed: %s", request.method, request.url.path, exc.message)
        return _error(state, request, exc.status, exc.code.replace("_", " "), exc.message)

    @app.exception_handler(RequestValidationError)
    async def _query(request: Request, exc: RequestValidationError) -> Response:
        return _error(state, request, 400, "bad request", f"the address {request.url.path} has a malformed parameter")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            message = f"there is no console page at {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return _error(state, request, exc.status_code, "error", message)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log.exception("console: unexpected error on %s %s", request.method, request.url.path)
        return _error(state, request, 500, "error", "the server hit an unexpected error; it has been logged")
