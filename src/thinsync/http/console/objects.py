"""Generic pages over the kind registry: list, create, edit, delete, history and revert; settings."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from thinsync.config.service import kind_spec
from thinsync.errors import Conflict, Invalid, NotFound, ThinsyncError
from thinsync.http.console import forms
from thinsync.http.console.pages import GENERIC_KINDS, PAGES
from thinsync.http.console.web import BASE, Console, Page, console
from thinsync.model.registry import ACCOUNT_KINDS, KindSpec
from thinsync.model.types import valid_name

router = APIRouter()
COLUMNS = 4


def _spec(kind: str) -> KindSpec:
    if kind not in GENERIC_KINDS:
        raise NotFound(f"the console has no pages for '{kind}'")
    return kind_spec(kind)


def write_permission(kind: str) -> str:
    return "admin" if kind in ACCOUNT_KINDS else "write"


def columns(spec: KindSpec) -> list[forms.Field]:
    """The list page's columns: the first few top-level, short fields of the kind."""
    shown = [f for f in forms.fields_of(spec) if "." not in f.name and f.widget not in ("json", "password")]
    return shown[:COLUMNS]


async def _choices(state: Console, fields: list[forms.Field]) -> dict[str, list[str]]:
    """Names a field may refer to (for selects and the hints under lists)."""
    out = {}
    for f in fields:
        if f.ref:
            out[f.name] = await state.tree_names(f.ref)
    return out


async def _rows(state: Console, spec: KindSpec) -> list[dict[str, Any]]:
    page = await state.svc.config.list_page(spec.name)
    return list(page["items"])


@router.get("/k/{kind}")
async def list_page(request: Request, kind: str) -> Response:
    spec = _spec(kind)
    state = console(request)
    pg = await state.page(request)
    return await state.render(
        request,
        pg,
        "objects.html",
        help=kind,
        title=PAGES[kind],
        spec=spec,
        kind=kind,
        columns=columns(spec),
        rows=await _rows(state, spec),
        value=forms.display,
        may_edit=pg.may_edit(write_permission(kind)),
    )


@router.get("/k/{kind}/+rows")
async def list_rows(request: Request, kind: str, v: int = -1) -> Response:
    """The list's table body, for live updates: 204 (no swap) until the configuration changed."""
    spec = _spec(kind)
    state = console(request)
    pg = await state.page(request)
    if v == state.generation:
        return Response(status_code=204)
    return state.fragment(
        "_object_rows.html",
        kind=kind,
        spec=spec,
        columns=columns(spec),
        rows=await _rows(state, spec),
        value=forms.display,
        may_edit=pg.may_edit(write_permission(kind)),
        generation=state.generation,
    )


async def _form_page(
    request: Request,
    pg: Page,
    spec: KindSpec,
    name: str | None,
    body: dict[str, Any],
    errors: forms.Errors,
    version: str = "",
) -> Response:
    state = console(request)
    fields = forms.fields_of(spec)
    return await state.render(
        request,
        pg,
        "object_form.html",
        help=spec.name,
        title=f"{'Edit' if name else 'New'} {spec.title}" + (f" {name}" if name else ""),
        spec=spec,
        kind=spec.name,
        name=name,
        body=body,
        fields=fields,
        choices=await _choices(state, fields),
        errors=errors,
        version=version,
        value=forms.display,
        may_edit=pg.may_edit(write_permission(spec.name)),
    )


@router.get("/k/{kind}/+new")
async def new_form(request: Request, kind: str) -> Response:
    spec = _spec(kind)
    state = console(request)
    if kind == "terminals":
        return state.redirect(f"{BASE}/terminal-wizard")
    pg = await state.page(request)
    return await _form_page(request, pg, spec, None, forms.defaults(spec.model), forms.Errors())


@router.post("/k/{kind}/+new")
async def create(request: Request, kind: str) -> Response:
    spec = _spec(kind)
    state = console(request)
    pg = await state.page(request, write_permission(kind))
    form = await state.form(request, pg)
    errors = forms.Errors()
    name = str(form.get("name") or "").strip()
    body = forms.parse(spec, form, errors, patch=False)
    if not name:
        errors.add("name", "is required")
    elif not valid_name(name):
        errors.add("name", "use 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit")
    else:
        exists = await asyncio.to_thread(state.svc.store.get, spec.name, name)
        if exists.live:
            errors.add("name", f"a {spec.title} named '{name}' already exists")
    if errors:
        forms.check(spec, name, body, errors)
    else:
        try:
            await state.svc.config.put(pg.who.name, spec.name, name, body)
            return state.redirect(f"{BASE}/k/{kind}", f"{spec.title.capitalize()} {name} created.")
        except ThinsyncError as exc:
            forms.place(exc, ["name", *(f.name for f in forms.fields_of(spec))], errors)
    return await _form_page(request, pg, spec, None, {"name": name, **body}, errors)


@router.get("/k/{kind}/{name}")
async def edit_form(request: Request, kind: str, name: str) -> Response:
    spec = _spec(kind)
    state = console(request)
    if kind == "terminals":
        return state.redirect(f"{BASE}/terminal-wizard?name={name}")
    pg = await state.page(request)
    obj = await state.svc.config.get(spec.name, name)
    return await _form_page(request, pg, spec, name, obj, forms.Errors(), obj.get("version", ""))


@router.post("/k/{kind}/{name}")
async def save(request: Request, kind: str, name: str) -> Response:
    spec = _spec(kind)
    state = console(request)
    pg = await state.page(request, write_permission(kind))
    form = await state.form(request, pg)
    errors = forms.Errors()
    patch = forms.parse(spec, form, errors, patch=True)
    version = str(form.get("version") or "") or None
    if not errors:
        try:
            await state.svc.config.patch(pg.who.name, spec.name, name, patch, version)
            return state.redirect(f"{BASE}/k/{kind}", f"{spec.title.capitalize()} {name} saved.")
        except ThinsyncError as exc:
            if exc.status == 412:
                exc = Conflict(f"someone changed {spec.title} {name} after you opened it; reload to see their change")
            forms.place(exc, [f.name for f in forms.fields_of(spec)], errors)
    shown = {k: v for k, v in patch.items() if v is not None}
    return await _form_page(request, pg, spec, name, {"name": name, **shown}, errors, version or "")


async def _delete_page(
    request: Request, pg: Any, spec: Any, kind: str, name: str, version: str, error: str | None
) -> Response:
    return await console(request).render(
        request,
        pg,
        "delete.html",
        help=kind,
        title=f"Delete {spec.title} {name}",
        spec=spec,
        kind=kind,
        name=name,
        version=version,
        error=error,
        may_edit=pg.may_edit(write_permission(kind)),
    )


@router.get("/k/{kind}/{name}/delete")
async def delete_page(request: Request, kind: str, name: str) -> Response:
    spec = _spec(kind)
    pg = await console(request).page(request)
    obj = await console(request).svc.config.get(spec.name, name)
    return await _delete_page(request, pg, spec, kind, name, obj.get("version", ""), None)


@router.post("/k/{kind}/{name}/delete")
async def delete(request: Request, kind: str, name: str) -> Response:
    spec = _spec(kind)
    state = console(request)
    pg = await state.page(request, write_permission(kind))
    form = await state.form(request, pg)
    version = str(form.get("version") or "") or None
    try:
        await state.svc.config.delete(pg.who.name, spec.name, name, version)
    except ThinsyncError as exc:
        return await _delete_page(request, pg, spec, kind, name, version or "", exc.message)
    return state.redirect(f"{BASE}/k/{kind}", f"{spec.title.capitalize()} {name} deleted.")


# ---------------------------------------------------------------------- history


@router.get("/history/{kind}/{name}")
async def history(request: Request, kind: str, name: str) -> Response:
    spec = kind_spec(kind)
    state = console(request)
    pg = await state.page(request)
    try:
        items = await state.svc.config.history(spec.name, name)
    except NotFound:
        items = []  # never written (a singleton still at its defaults): an empty history, not an error
    back = f"{BASE}/settings" if kind == "settings" else f"{BASE}/k/{kind}/{name}"
    return await state.render(
        request,
        pg,
        "history.html",
        help="history",
        title=f"History of {spec.title} {name}",
        spec=spec,
        kind=kind,
        name=name,
        items=items,
        back=back,
        may_edit=pg.may_edit(write_permission(kind)),
    )


@router.post("/history/{kind}/{name}/revert")
async def revert(request: Request, kind: str, name: str) -> Response:
    spec = kind_spec(kind)
    state = console(request)
    pg = await state.page(request, write_permission(kind))
    form = await state.form(request, pg)
    version = str(form.get("version") or "")
    if not version:
        raise Invalid("choose the version to revert to")
    result = await state.svc.backups.revert(spec.name, name, version, pg.who.name)
    message = f"{spec.title.capitalize()} {name} reverted." if result.get("changed") else "Nothing to revert."
    return state.redirect(f"{BASE}/history/{kind}/{name}", message)


# ---------------------------------------------------------------------- settings (singleton)


@router.get("/settings")
async def settings_page(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request)
    obj = await state.svc.config.get("settings")
    return await _singleton_page(request, pg, obj, forms.Errors(), obj.get("version", ""))


async def _singleton_page(
    request: Request, pg: Page, body: dict[str, Any], errors: forms.Errors, version: str
) -> Response:
    spec = kind_spec("settings")
    return await console(request).render(
        request,
        pg,
        "object_form.html",
        help="settings",
        title="Settings",
        spec=spec,
        kind="settings",
        name=None,
        body=body,
        fields=forms.fields_of(spec),
        choices={},
        errors=errors,
        version=version,
        value=forms.display,
        may_edit=pg.may_edit("write"),
        singleton=True,
    )


@router.post("/settings")
async def save_settings(request: Request) -> Response:
    spec = kind_spec("settings")
    state = console(request)
    pg = await state.page(request, "write")
    form = await state.form(request, pg)
    errors = forms.Errors()
    body = forms.parse(spec, form, errors, patch=False)
    version = str(form.get("version") or "") or None
    if not errors:
        try:
            await state.svc.config.put(pg.who.name, "settings", "default", body, version)
            return state.redirect(f"{BASE}/settings", "Settings saved.")
        except ThinsyncError as exc:
            forms.place(exc, [f.name for f in forms.fields_of(spec)], errors)
    return await _singleton_page(request, pg, body, errors, version or "")
