"""Manage > Server List: the wizard (server list, Auto-synchronization Configuration, Enter Server
Information with Discover, Finish with pairing) and the Discover button's answer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from thinsync.errors import ThinsyncError
from thinsync.http.console import forms
from thinsync.http.console.web import BASE, Page, console

router = APIRouter()
ROLES = (("p", "primary"), ("s", "secondary"))
STEPS = {"list": "server-list", "sync": "server-list-sync", "pair": "server-list-pair", "result": "server-list-result"}
DEFAULT_PORT = 2031


@dataclass
class Wizard:
    """The wizard's answers so far, carried from page to page in hidden fields."""

    auto_sync: bool = False
    mode: str = "redundant"
    entries: dict[str, dict[str, str]] = field(default_factory=dict)  # "p"/"s" -> name, address, port
    servers: list[dict[str, Any]] = field(default_factory=list)
    version: str = ""

    @classmethod
    def from_list(cls, sl: dict[str, Any]) -> Wizard:
        entries = {}
        for key, role in ROLES:
            entry = sl.get(role) or {}
            entries[key] = {
                "name": str(entry.get("name", "")),
                "address": str(entry.get("address", "")),
                "port": str(entry.get("port", DEFAULT_PORT)),
            }
        return cls(
            bool(sl.get("auto_sync")),
            str(sl.get("mode", "redundant")),
            entries,
            list(sl.get("servers") or []),
            str(sl.get("version", "")),
        )

    @classmethod
    def from_form(cls, form: Any) -> Wizard:
        entries = {
            key: {part: str(form.get(f"{key}_{part}") or "").strip() for part in ("name", "address", "port")}
            for key, _ in ROLES
        }
        try:
            servers = json.loads(str(form.get("servers") or "[]"))
        except ValueError:
            servers = []
        return cls(
            form.get("auto_sync") is not None,
            "mirrored" if form.get("mode") == "mirrored" else "redundant",
            entries,
            servers if isinstance(servers, list) else [],
            str(form.get("version") or ""),
        )

    def body(self, errors: forms.Errors) -> dict[str, Any]:
        """The server list this wizard describes (an entry left empty is not on the list)."""
        body: dict[str, Any] = {"auto_sync": self.auto_sync, "mode": self.mode, "servers": self.servers}
        for key, role in ROLES:
            entry = self.entries.get(key) or {}
            if not any(entry.get(p) for p in ("name", "address")):
                body[role] = None
                continue
            port: Any = entry.get("port") or DEFAULT_PORT
            try:
                port = int(port)
            except ValueError:
                errors.add(f"{key}_port", "must be a whole number (2031 unless changed)")
            body[role] = {"name": entry.get("name", ""), "address": entry.get("address", ""), "port": port}
        return body


def _field_names() -> list[str]:
    return [f"{key}_{part}" for key, _ in ROLES for part in ("name", "address", "port")]


def _place(exc: ThinsyncError, errors: forms.Errors) -> None:
    """Service errors about `primary.address` go next to the primary's address, and so on."""
    items = exc.details.get("fields")
    if isinstance(items, list):
        for item in items:
            where = str(item.get("field", ""))
            for key, role in ROLES:
                if where.startswith(role + "."):
                    where = f"{key}_{where.split('.')[1]}"
                elif where == role:
                    where = f"{key}_name"
            target = forms.match_field(where, _field_names())
            message = str(item.get("message", "is not valid"))
            if target:
                errors.add(target, message)
            else:
                errors.general.append(message if where in ("", "body") else f"{where}: {message}")
        return
    errors.general.append(exc.message)


async def _show(request: Request, pg: Page, step: str, wiz: Wizard, errors: forms.Errors, **extra: Any) -> Response:
    state = console(request)
    me = state.svc.store.require_identity().name
    others = [
        wiz.entries[key]["name"] for key, _ in ROLES if wiz.entries.get(key, {}).get("name", "").lower() != me.lower()
    ]
    return await state.render(
        request,
        pg,
        "server_list.html",
        help=STEPS[step],
        title="Server List Wizard",
        step=step,
        wiz=wiz,
        roles=ROLES,
        errors=errors,
        me=me,
        others=[o for o in others if o],
        servers_json=json.dumps(wiz.servers),
        may_edit=pg.can("admin"),
        **extra,
    )


@router.get("/server-list")
async def start(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request)
    wiz = Wizard.from_list(await state.svc.config.get("server-list"))
    if not wiz.entries["p"]["name"]:
        # A new list starts with this server as the primary, at the address the browser used.
        wiz.entries["p"] = {
            "name": state.svc.store.require_identity().name,
            "address": request.url.hostname or "",
            "port": str(request.url.port or DEFAULT_PORT),
        }
    return await _show(request, pg, "list", wiz, forms.Errors())


@router.post("/server-list")
async def step(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request, "admin")
    form = await state.form(request, pg)
    wiz = Wizard.from_form(form)
    at = str(form.get("step") or "list")
    action = str(form.get("action") or "next")
    errors = forms.Errors()
    if action == "cancel":
        return state.redirect(f"{BASE}/sync", "Server list wizard cancelled; nothing was changed.")
    if action == "back":
        return await _show(request, pg, {"pair": "sync", "sync": "list"}.get(at, "list"), wiz, errors)
    body = wiz.body(errors)
    needs_pairing = state.svc.sync.needs_pairing(body) if not errors else False
    if action == "next":
        if at == "list":
            return await _show(request, pg, "sync", wiz, errors)
        if at == "sync" and wiz.auto_sync and needs_pairing:
            return await _show(request, pg, "pair", wiz, errors)
        return await _show(request, pg, at, wiz, errors)
    # Finish
    if errors:
        return await _show(request, pg, "sync", wiz, errors)
    if needs_pairing and at != "pair":
        if not (body.get("primary") and body.get("secondary")):
            errors.general.append("automatic synchronization needs both a primary and a secondary server")
            for key, role in ROLES:
                if not body.get(role):
                    errors.add(f"{key}_name", f"enter the {role} server (Edit)")
            return await _show(request, pg, "sync", wiz, errors)
        return await _show(request, pg, "pair", wiz, errors)
    if needs_pairing:
        code = str(form.get("pairing_code") or "").strip()
        username = str(form.get("peer_username") or "").strip()
        password = str(form.get("peer_password") or "")
        if code:
            body["peer_auth"] = {"pairing_code": code}
        elif username and password:
            body["peer_auth"] = {"username": username, "password": password}
        else:
            if not username:
                errors.add("peer_username", "enter an admin account of the other server (or a pairing code)")
            if not password:
                errors.add("peer_password", "enter its password (or a pairing code)")
            return await _show(request, pg, "pair", wiz, errors)
    try:
        saved = await state.svc.sync.set_server_list(body, pg.who.name, wiz.version or None)
    except ThinsyncError as exc:
        if needs_pairing and ("refused to pair" in exc.message or "credentials" in exc.message):
            errors.add("pairing_code" if "pairing_code" in body.get("peer_auth", {}) else "peer_password", exc.message)
            return await _show(request, pg, "pair", wiz, errors)
        if exc.status == 412:
            errors.general.append("someone changed the server list meanwhile; cancel and start the wizard again")
        else:
            _place(exc, errors)
        return await _show(request, pg, "pair" if needs_pairing and not errors.fields else "sync", wiz, errors)
    status = await state.svc.sync.status()
    return await _show(request, pg, "result", Wizard.from_list(saved), errors, status=status, paired=needs_pairing)


@router.post("/discover")
async def discover(request: Request) -> Response:
    """Resolve the name typed in Enter Server Information; fill in its address and say whether a
    thinsync server answers there."""
    state = console(request)
    pg = await state.page(request)
    form = await state.form(request, pg)
    name = str(form.get("name") or "").strip()
    port_text = str(form.get("port") or DEFAULT_PORT).strip()
    try:
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError
    except ValueError:
        return state.fragment("_discover.html", error=f"the port '{port_text}' is not a number from 1 to 65535")
    if not name:
        return state.fragment("_discover.html", error="type the server's name first, then press Discover")
    try:
        found = await state.svc.sync.discover(name, port)
    except ThinsyncError as exc:
        return state.fragment("_discover.html", error=exc.message)
    return state.fragment("_discover.html", error=None, found=found)
