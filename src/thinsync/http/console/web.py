"""Console plumbing: the session cookie, CSRF tokens, the page context, rendering and flashes.

The session cookie holds an ordinary AuthService bearer token (HMAC-signed, expiring, void once
the password changes), HttpOnly and SameSite=Strict. Its name carries the node id, so two servers
on one host (the demo, the tests) keep their sessions apart although cookies ignore the port.
Every POST carries a CSRF token: an HMAC of the session token, in the form field `csrf` or, for
htmx requests, the `X-CSRF-Token` header (set once on <body hx-headers>).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader

from thinsync import __version__
from thinsync.auth.service import Principal
from thinsync.errors import Forbidden, Unauthorized
from thinsync.http.console.charts import LagHistory
from thinsync.http.console.pages import PAGES, TREE_KINDS
from thinsync.http.context import Services
from thinsync.store import ChangeSet

log = logging.getLogger(__name__)
BASE = "/console"
HERE = Path(__file__).parent
TREE_LIMIT = 200
UPLOAD_TTL_S = 900.0


class LoginRequired(Exception):
    """No valid session: full pages redirect to the log-in page, htmx requests get HX-Redirect."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class CsrfRefused(Forbidden):
    code = "csrf"


@dataclass
class Page:
    """What every console page knows about its request: who, this server, its role, the licence."""

    who: Principal
    csrf: str
    server: str
    role: str
    mode: str
    auto_sync: bool
    read_only: bool
    primary: dict[str, Any] | None
    pairing: str | None
    flash: str | None = None
    licence: dict[str, Any] = field(default_factory=dict)

    def can(self, permission: str) -> bool:
        return permission in self.who.permissions

    def may_edit(self, permission: str = "write") -> bool:
        return self.can(permission) and not self.read_only


class Console:
    """The console's state on one server: templates, the change counter live views poll, the lag
    history for the chart, and restore uploads waiting for their confirmation."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(BASE=BASE, PAGES=PAGES, version=__version__)
        self.env.filters["when"] = when
        # Bumped on every committed change set (local or replicated); live views poll with the value
        # they were drawn at and get 204 (htmx: no swap) until it moves.
        self.generation = 0
        self.lag = LagHistory()
        self.uploads: dict[str, tuple[bytes, str, float]] = {}
        self._sampler: asyncio.Task[None] | None = None
        svc.store.subscribe(self._on_change)

    def _on_change(self, changes: list[ChangeSet]) -> None:
        self.generation += 1

    def cookie(self, what: str) -> str:
        return f"ts_{what}_{self.svc.store.require_identity().node_id[:12]}"

    # ------------------------------------------------------------------ lifecycle (from http/app.py)

    def start(self) -> None:
        """Start sampling synchronization lag for the chart (called from the app's lifespan)."""
        if self._sampler is None:
            self._sampler = asyncio.create_task(self.lag.run(self.svc))

    async def stop(self) -> None:
        task, self._sampler = self._sampler, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ------------------------------------------------------------------ sessions

    async def page(self, request: Request, need: str = "read") -> Page:
        """The page context for a logged-in user with permission `need`; LoginRequired otherwise."""
        token = request.cookies.get(self.cookie("session"))
        if not token:
            raise LoginRequired()
        try:
            who = await self.svc.auth.authenticate_token(token)
        except Unauthorized as exc:
            raise LoginRequired(exc.message) from None
        who.require(need)
        sync = self.svc.sync
        sl = sync.server_list
        role = sync.my_role()
        read_only = bool(sl.get("auto_sync")) and sl.get("mode") == "mirrored" and role == "secondary"
        flash = request.cookies.get(self.cookie("flash"))
        return Page(
            who=who,
            csrf=self.svc.auth.sign("csrf", token),
            server=self.svc.store.require_identity().name,
            role=role,
            mode=str(sl.get("mode", "redundant")),
            auto_sync=bool(sl.get("auto_sync")),
            read_only=read_only,
            primary=sl.get("primary"),
            pairing=sync.pairing_with(),
            flash=unquote(flash) if flash else None,
        )

    async def form(self, request: Request, pg: Page) -> Any:
        """The posted form, after checking its CSRF token (header or field) against the session."""
        form = await request.form()
        given = request.headers.get("x-csrf-token") or str(form.get("csrf") or "")
        if not given or not hmac.compare_digest(given, pg.csrf):
            await form.close()  # uploaded files' temporary files
            raise CsrfRefused("the form's security token does not match your session; reload the page and try again")
        return form

    def login_csrf(self, nonce: str) -> str:
        return self.svc.auth.sign("login", nonce)

    # ------------------------------------------------------------------ rendering

    def html(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    async def render(self, request: Request, pg: Page, template: str, *, help: str, **context: Any) -> HTMLResponse:
        """A full page in the layout (tree, menu, banners); `help` names its docs/help page."""
        if help not in PAGES:
            raise ValueError(f"page help '{help}' is not registered in console.pages.PAGES")
        pg.licence = await asyncio.to_thread(self.svc.licensing.check)
        tree = {kind: await self.tree_names(kind) for kind in TREE_KINDS}
        body = self.html(template, **{"pg": pg, "help": help, "tree": tree, "generation": self.generation, **context})
        response = HTMLResponse(body)
        if pg.flash:
            response.delete_cookie(self.cookie("flash"), path=BASE)
        return response

    def fragment(self, template: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.html(template, **context))

    async def tree_names(self, kind: str) -> list[str]:
        rows = await asyncio.to_thread(self.svc.store.list_live, kind, "", TREE_LIMIT + 1)
        return [name for name, _state, _problems in rows]

    def redirect(self, url: str, flash: str | None = None) -> Response:
        """303 to `url` (after a POST), with a one-time message for the next page."""
        response = RedirectResponse(url, status_code=303)
        if flash:
            response.set_cookie(
                self.cookie("flash"), quote(flash), max_age=60, path=BASE, httponly=True, samesite="strict"
            )
        return response

    # ------------------------------------------------------------------ restore uploads

    def keep_upload(self, data: bytes, label: str, now: float) -> str:
        for key, (_, _, at) in list(self.uploads.items()):
            if now - at > UPLOAD_TTL_S:
                del self.uploads[key]
        key = secrets.token_urlsafe(12)
        self.uploads[key] = (data, label, now)
        return key


def when(value: Any) -> str:
    """A time (epoch seconds or ISO 8601) as a short UTC text: the clock time for today, else the date too."""
    if value in (None, ""):
        return "–"
    try:
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(float(value), UTC)
        else:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):
        return str(value)
    today = datetime.now(UTC).date() == moment.date()
    return moment.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M") + " UTC"


def console(request: Request) -> Console:
    return request.app.state.console  # type: ignore[no-any-return]


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"
