"""The Terminal Configuration Wizard and the terminal status lights.

The wizard's pages follow ThinManager's: Terminal Name, Terminal Hardware, Display Client
Selection, Terminal Options, Server Monitor List (only while automatic synchronization is off: with
it on, terminals report to every server of the list) and Connection Monitor. The terminal being
built travels between pages as JSON in a hidden field; Finish saves it with one PUT.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from thinsync.errors import ThinsyncError
from thinsync.http.console import forms
from thinsync.http.console.web import BASE, Page, console
from thinsync.model import kinds as k
from thinsync.model.validate import describe_errors

router = APIRouter()
STEPS = ("name", "hardware", "display-clients", "options", "monitor-list", "connection-monitor")
SCREENS = 4
# Which parts of a terminal each page edits (the first part of an error's path).
OWNS = {
    "name": ("name", "description", "group", "location"),
    "hardware": ("hardware",),
    "display-clients": ("screens",),
    "options": ("options",),
    "monitor-list": ("monitor_list",),
    "connection-monitor": ("connection_monitor",),
}
MODELS = ["ACP-6000", "ACP-8000", "VersaView 5200", "Raspberry Pi 4", "Generic PXE"]


def steps(auto_sync: bool) -> list[str]:
    """The wizard's pages: no Server Monitor List while automatic synchronization is on."""
    return [s for s in STEPS if not (auto_sync and s == "monitor-list")]


def page_of(path: str) -> str:
    head = path.split(".")[0]
    for step, parts in OWNS.items():
        if head in parts:
            return step
    return "name"


def _int(form: Any, name: str, errors: forms.Errors) -> int | None:
    text = str(form.get(name) or "").strip()
    if not text:
        errors.add(name, "is required")
        return None
    try:
        return int(text)
    except ValueError:
        errors.add(name, "must be a whole number")
        return None


def apply(step: str, form: Any, body: dict[str, Any], errors: forms.Errors) -> None:
    """Take one page's inputs into the terminal being built."""
    text = lambda name: str(form.get(name) or "").strip()  # noqa: E731
    inherit = bool(body.get("group"))
    if step == "name":
        body["description"] = text("description")
        for key in ("group", "location"):
            if text(key):
                body[key] = text(key)
            else:
                body.pop(key, None)
    elif step == "hardware":
        hardware = {"model": text("hardware.model"), "mac": text("hardware.mac")}
        if text("hardware.secondary_mac"):
            hardware["secondary_mac"] = text("hardware.secondary_mac")
        body["hardware"] = hardware
    elif step == "display-clients":
        if inherit and form.get("inherit_screens") is not None:
            body["screens"] = None
        else:
            old = body.get("screens") or []
            screens = []
            for i in range(SCREENS):
                picked = [str(v) for v in form.getlist(f"screen{i + 1}")]
                before = old[i] if i < len(old) and isinstance(old[i], dict) else {}
                # Keep the order the screen had (it cycles through them in that order); new ones go last.
                kept = [c for c in before.get("display_clients") or [] if c in picked]
                chosen = kept + [c for c in picked if c not in kept]
                if chosen or i == 0:
                    monitors = before.get("monitors")
                    screen: dict[str, Any] = {"display_clients": chosen}
                    if monitors:
                        screen["monitors"] = monitors
                    screens.append(screen)
            body["screens"] = screens
    elif step == "options":
        if inherit and form.get("inherit_options") is not None:
            body["options"] = None
        else:
            options = {
                key: form.get(f"options.{key}") is not None
                for key in ("replaceable", "allow_shadow", "enforce_boot_priority")
            }
            _set_block(body, "options", options, k.TerminalOptions().model_dump())
    elif step == "monitor-list":
        servers = [s.strip() for s in text("monitor_list.servers").replace("\n", ",").split(",") if s.strip()]
        monitor_list = {"specify": form.get("monitor_list.specify") is not None, "servers": servers}
        _set_block(body, "monitor_list", monitor_list, k.MonitorList().model_dump(), grouped=False)
    elif step == "connection-monitor":
        if inherit and form.get("inherit_connection_monitor") is not None:
            body["connection_monitor"] = None
        else:
            cm = {}
            for key in ("ping_timeout_s", "ping_retry", "interval_s"):
                value = _int(form, f"connection_monitor.{key}", errors)
                if value is not None:
                    cm[key] = value
            _set_block(body, "connection_monitor", cm, k.ConnectionMonitor().model_dump())


def _set_block(
    body: dict[str, Any], key: str, value: dict[str, Any], default: dict[str, Any], grouped: bool = True
) -> None:
    """Set a block; but a block never set stays unset while the page shows only the defaults (for a
    terminal in a group only where the page has no "use the group's" choice, `grouped=False`), so
    walking through the wizard changes nothing by itself."""
    if (not grouped or not body.get("group")) and body.get(key) is None and value == default:
        pass
    else:
        body[key] = value


def check(step: str, name: str, body: dict[str, Any], errors: forms.Errors) -> None:
    """The model's complaints about this page's parts (other pages may still be unfinished)."""
    try:
        k.Terminal.model_validate({k2: v for k2, v in {**body, "name": name}.items() if v is not None})
    except ValidationError as exc:
        _, items = describe_errors(exc)
        for item in items:
            if page_of(item["field"]) == step:
                errors.add(_field_key(item["field"]), item["message"])


def _field_key(path: str) -> str:
    """`screens.0.display_clients.1` -> `screens`; `hardware.mac` stays (it has its own input)."""
    parts = path.split(".")
    if parts[0] in ("screens", "monitor_list") and len(parts) > 1 and parts[1] != "specify":
        return "screens" if parts[0] == "screens" else "monitor_list.servers"
    if parts[0] in ("hardware", "connection_monitor", "options") and len(parts) == 1:
        return parts[0]
    return ".".join(parts[:2])


async def _show(
    request: Request,
    pg: Page,
    step: str,
    name: str,
    original: str,
    body: dict[str, Any],
    version: str,
    errors: forms.Errors,
) -> Response:
    state = console(request)
    order = steps(pg.auto_sync)
    if step not in order:
        step = order[0]
    clients = await state.tree_names("display-clients")
    groups = await state.tree_names("terminal-groups")
    locations = await state.tree_names("locations")
    return await state.render(
        request,
        pg,
        "terminal_wizard.html",
        help=f"terminal-{step}",
        title=f"Terminal Configuration Wizard: {name or 'new terminal'}",
        step=step,
        order=order,
        index=order.index(step),
        name=name,
        original=original,
        body=body,
        state_json=json.dumps(body),
        version=version,
        errors=errors,
        clients=clients,
        groups=groups,
        locations=locations,
        models=MODELS,
        screens=SCREENS,
        may_edit=pg.may_edit("write"),
        defaults_cm=k.ConnectionMonitor().model_dump(),
        defaults_options=k.TerminalOptions().model_dump(),
    )


@router.get("/terminal-wizard")
async def start(request: Request, name: str = "") -> Response:
    state = console(request)
    pg = await state.page(request)
    if name:
        obj = await state.svc.config.get("terminals", name)
        version = str(obj.pop("version", ""))
        obj.pop("name", None)
        obj.pop("problems", None)
        return await _show(request, pg, "name", name, name, obj, version, forms.Errors())
    body: dict[str, Any] = {"description": "", "screens": [{"display_clients": []}]}
    return await _show(request, pg, "name", "", "", body, "", forms.Errors())


@router.post("/terminal-wizard")
async def step(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request, "write")
    form = await state.form(request, pg)
    original = str(form.get("original") or "")
    name = original or str(form.get("name") or "").strip()
    version = str(form.get("version") or "")
    try:
        body = json.loads(str(form.get("state") or "{}"))
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    at = str(form.get("step") or "name")
    action = str(form.get("action") or "next")
    if action == "cancel":
        return state.redirect(f"{BASE}/k/terminals", "Terminal Configuration Wizard cancelled; nothing was changed.")
    order = steps(pg.auto_sync)
    at = at if at in order else order[0]
    errors = forms.Errors()
    apply(at, form, body, errors)
    if action == "back":
        return await _show(request, pg, order[max(0, order.index(at) - 1)], name, original, body, version, errors)
    if at == "name" and not original:
        if not name:
            errors.add("name", "is required")
        elif (await asyncio.to_thread(state.svc.store.get, "terminals", name)).live:
            errors.add("name", f"a terminal named '{name}' already exists; pick it in the tree to edit it")
    check(at, name, body, errors)
    if errors:
        return await _show(request, pg, at, name, original, body, version, errors)
    if action == "next":
        following = order[min(len(order) - 1, order.index(at) + 1)]
        return await _show(request, pg, following, name, original, body, version, errors)
    # Finish: the whole terminal, once, through the same service as the API.
    for other in order:
        check(other, name, body, errors)
        if errors:
            return await _show(request, pg, other, name, original, body, version, errors)
    clean = {key: value for key, value in body.items() if value is not None}
    try:
        await state.svc.config.put(pg.who.name, "terminals", name, clean, version or None)
    except ThinsyncError as exc:
        names = [
            "name",
            "description",
            "group",
            "location",
            "hardware.model",
            "hardware.mac",
            "hardware.secondary_mac",
            "screens",
            "options",
            "monitor_list.servers",
            "connection_monitor.ping_timeout_s",
            "connection_monitor.ping_retry",
            "connection_monitor.interval_s",
        ]
        if exc.status == 412:
            errors.general.append(f"someone changed terminal {name} meanwhile; cancel and open it again")
        else:
            forms.place(exc, names, errors)
        where = page_of(next(iter(errors.fields), "name"))
        return await _show(request, pg, where if where in order else order[0], name, original, body, version, errors)
    return state.redirect(f"{BASE}/k/terminals", f"Terminal {name} saved.")


# ---------------------------------------------------------------------- status lights


@router.get("/terminal-status")
async def status_page(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request)
    items = await state.svc.terminals.status()
    return await state.render(
        request, pg, "terminal_status.html", help="terminal-status", title="Terminal status", items=items
    )


@router.get("/terminal-status/grid")
async def status_grid(request: Request) -> Response:
    state = console(request)
    await state.page(request)
    return state.fragment("_terminal_grid.html", items=await state.svc.terminals.status())
