"""Log-in and log-out, the overview page, help pages and the live configuration tree."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from thinsync.errors import NotFound, Unauthorized
from thinsync.http.console import markdown
from thinsync.http.console.forms import Errors
from thinsync.http.console.pages import PAGES, TREE_KINDS
from thinsync.http.console.web import BASE, HERE, CsrfRefused, LoginRequired, console, is_htmx

router = APIRouter()
# docs/help in the source tree; the package's `help` entry links to it so that installs carry it.
HELP_DIRS = (HERE / "help", HERE.parents[3] / "docs" / "help")


def help_file(page: str) -> Path | None:
    """The Markdown file of a page's help, or None."""
    for directory in HELP_DIRS:
        path = directory / f"{page}.md"
        if path.is_file():
            return path
    return None


def _safe_next(target: str | None) -> str:
    """Only console paths: a log-in link cannot send anyone elsewhere."""
    if target and target.startswith(BASE + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return BASE + "/"


@router.get("/")
async def home(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request)
    svc = state.svc
    status = await svc.sync.status()
    lights = await svc.terminals.status()
    counts = {s: sum(1 for t in lights if t["status"] == s) for s in ("online", "offline", "never")}
    sizes = {kind: await asyncio.to_thread(svc.store.count, kind) for kind in TREE_KINDS}
    return await state.render(
        request, pg, "home.html", help="home", title="Overview", status=status, counts=counts, sizes=sizes
    )


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    state = console(request)
    try:
        await state.page(request)
        return RedirectResponse(_safe_next(next), status_code=303)
    except LoginRequired as exc:
        reason = exc.message
    return _login_form(request, next, Errors(), "", reason if request.cookies.get(state.cookie("session")) else "")


def _login_form(request: Request, next: str | None, errors: Errors, username: str, notice: str = "") -> Response:
    state = console(request)
    nonce = request.cookies.get(state.cookie("login")) or secrets.token_urlsafe(16)
    body = state.html(
        "login.html",
        help="login",
        title="Log in",
        server=state.svc.store.require_identity().name,
        csrf=state.login_csrf(nonce),
        next=_safe_next(next),
        errors=errors,
        username=username,
        notice=notice,
    )
    response = HTMLResponse(body)
    response.set_cookie(state.cookie("login"), nonce, max_age=3600, path=BASE, httponly=True, samesite="strict")
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    state = console(request)
    svc = state.svc
    form = await request.form()
    nonce = request.cookies.get(state.cookie("login")) or ""
    given = str(form.get("csrf") or "")
    next_url = str(form.get("next") or "")
    if not nonce or not hmac.compare_digest(given, state.login_csrf(nonce)):
        raise CsrfRefused("the log-in form's security token does not match; reload the page and log in again")
    username = str(form.get("username") or "").strip()
    password = str(form.get("password") or "")
    errors = Errors()
    if not username:
        errors.add("username", "enter your user name")
    if not password:
        errors.add("password", "enter your password")
    if errors:
        return _login_form(request, next_url, errors, username)
    client = request.client.host if request.client else "?"
    try:
        token, expires = await svc.auth.login(username, password)
    except Unauthorized as exc:
        svc.metrics.logins.labels("failed").inc()
        svc.events.record("auth", f"failed console log-in as '{username}' from {client}", level="warning")
        errors.add("password", exc.message)
        return _login_form(request, next_url, errors, username)
    svc.metrics.logins.labels("ok").inc()
    svc.events.record("auth", f"'{username}' logged in to the console from {client}")
    response = RedirectResponse(_safe_next(next_url), status_code=303)
    response.set_cookie(
        state.cookie("session"),
        token,
        max_age=max(60, int(expires - time.time())),
        path=BASE,
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie(state.cookie("login"), path=BASE)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request)
    await state.form(request, pg)
    response = RedirectResponse(f"{BASE}/login", status_code=303)
    response.delete_cookie(state.cookie("session"), path=BASE)
    return response


@router.get("/help/{page}")
async def help_page(request: Request, page: str) -> Response:
    path = help_file(page) if page in PAGES else None
    if path is None:
        raise NotFound(f"there is no help page '{page}'")
    state = console(request)
    html = markdown.render(await asyncio.to_thread(path.read_text, "utf-8"))
    if is_htmx(request) or request.query_params.get("fragment"):
        return state.fragment("_help.html", page=page, content=html)
    return HTMLResponse(state.html("help.html", page=page, content=html, help=page, title=PAGES[page]))


@router.get("/tree")
async def tree(request: Request, v: int = -1) -> Response:
    state = console(request)
    await state.page(request)
    if v == state.generation:
        return Response(status_code=204)
    names = {kind: await state.tree_names(kind) for kind in TREE_KINDS}
    return state.fragment("_tree.html", tree=names, generation=state.generation)
