"""The Synchronization tab (servers, lights, lag chart, conflict inbox, sync events, Synchronize
now, promote) and Manage > Synchronize Configurations (the manual synchronization wizard)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from thinsync.errors import ThinsyncError
from thinsync.http.console import forms
from thinsync.http.console.web import BASE, Console, Page, console
from thinsync.sync import pairing

router = APIRouter()
EVENTS = 25


async def _status(state: Console) -> dict[str, Any]:
    status = await state.svc.sync.status()
    status["license"] = await asyncio.to_thread(state.svc.licensing.check)
    return status


async def _conflicts_context(state: Console, pg: Page) -> dict[str, Any]:
    return {
        "conflicts": await state.svc.sync.conflicts(),
        "generation": state.generation,
        "may_edit": pg.may_edit("write"),
        "pg": pg,
    }


@router.get("/sync")
async def sync_page(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request)
    return await state.render(
        request,
        pg,
        "sync.html",
        help="sync",
        title="Synchronization",
        status=await _status(state),
        chart=state.lag.svg(),
        events=await state.svc.events.list("sync", 0, EVENTS),
        **{k: v for k, v in (await _conflicts_context(state, pg)).items() if k != "pg"},
    )


@router.get("/sync/status")
async def status_fragment(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request)
    return state.fragment("_sync_status.html", status=await _status(state), chart=state.lag.svg(), pg=pg)


@router.get("/sync/events")
async def events_fragment(request: Request) -> Response:
    state = console(request)
    await state.page(request)
    return state.fragment("_sync_events.html", events=await state.svc.events.list("sync", 0, EVENTS))


@router.get("/sync/conflicts")
async def conflicts_fragment(request: Request, v: int = -1) -> Response:
    state = console(request)
    pg = await state.page(request)
    if v == state.generation:
        return Response(status_code=204)
    return state.fragment("_conflicts.html", **await _conflicts_context(state, pg))


@router.post("/sync/conflicts/{conflict_id}/resolve")
async def resolve(request: Request, conflict_id: str) -> Response:
    state = console(request)
    pg = await state.page(request, "write")
    form = await state.form(request, pg)
    keep = str(form.get("keep") or "")
    message = None
    try:
        await state.svc.sync.resolve(conflict_id, keep, pg.who.name)
    except ThinsyncError as exc:
        message = exc.message
    context = await _conflicts_context(state, pg)
    return state.fragment("_conflicts.html", **context, error=message)


@router.post("/sync/now")
async def sync_now(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request, "write")
    await state.form(request, pg)
    state.svc.sync.sync_now()
    return state.fragment("_flash.html", message="Synchronizing now: every link pushes and compares digests.")


@router.post("/sync/promote")
async def promote(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request, "admin")
    await state.form(request, pg)
    await state.svc.sync.promote(pg.who.name)
    return state.redirect(f"{BASE}/sync", "This server is now the primary.")


# ---------------------------------------------------------------------- manual synchronization


def _sources(state: Console) -> list[str]:
    me = state.svc.store.require_identity().name.lower()
    return [e["name"] for e in pairing.entries(state.svc.sync.server_list) if e["name"].lower() != me]


async def _manual(
    request: Request, pg: Page, step: str, values: dict[str, str], errors: forms.Errors, **extra: Any
) -> Response:
    state = console(request)
    return await state.render(
        request,
        pg,
        "manual_sync.html",
        help="manual-sync-review" if step == "review" else "manual-sync",
        title="Synchronize Configurations",
        step=step,
        values=values,
        errors=errors,
        sources=_sources(state),
        me=state.svc.store.require_identity().name,
        may_edit=pg.may_edit("admin") and not pg.auto_sync,
        **extra,
    )


@router.get("/manual-sync")
async def manual_start(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request)
    sources = _sources(state)
    values = {"source": sources[0] if sources else "", "username": "admin", "password": ""}
    return await _manual(request, pg, "choose", values, forms.Errors())


@router.post("/manual-sync")
async def manual_step(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request, "admin")
    form = await state.form(request, pg)
    action = str(form.get("action") or "next")
    at = str(form.get("step") or "choose")
    values = {k: str(form.get(k) or "").strip() for k in ("source", "username")}
    values["password"] = str(form.get("password") or "")
    errors = forms.Errors()
    if action == "cancel":
        return state.redirect(f"{BASE}/sync", "Synchronize Configurations cancelled; nothing was changed.")
    if action == "back":
        return await _manual(request, pg, "choose", values, errors)
    if not values["source"]:
        errors.add("source", "choose the server to copy the configuration from")
    if not values["username"]:
        errors.add("username", "enter an admin account of that server")
    if not values["password"]:
        errors.add("password", "enter its password")
    if errors:
        return await _manual(request, pg, "choose", values, errors)
    me = state.svc.store.require_identity().name
    auth = {"username": values["username"], "password": values["password"]}
    dry_run = not (action == "finish" and at == "review")
    try:
        result = await state.svc.sync.manual(values["source"], me, dry_run, auth, pg.who.name)
    except ThinsyncError as exc:
        if "refused" in exc.message or exc.status in (401, 403):
            errors.add("password", exc.message)
        else:
            errors.general.append(exc.message)
        return await _manual(request, pg, "choose", values, errors)
    if dry_run:
        return await _manual(request, pg, "review", values, errors, changes=result.get("diff") or {})
    return await _manual(request, pg, "done", values, errors, result=result)
