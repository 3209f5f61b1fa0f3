"""The licence page: the licence and its state, this server's node id (to request a licence) and
installing a signed licence file."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from thinsync.errors import ThinsyncError
from thinsync.http.console import forms
from thinsync.http.console.web import BASE, Page, console

router = APIRouter()
MAX_BYTES = 1 << 20


async def _page(request: Request, pg: Page, errors: forms.Errors | None = None) -> Response:
    state = console(request)
    return await state.render(
        request,
        pg,
        "license.html",
        help="license",
        title="Licence",
        licence=await asyncio.to_thread(state.svc.licensing.check),
        node_id=state.svc.store.require_identity().node_id,
        errors=errors or forms.Errors(),
        may_admin=pg.can("admin"),
    )


@router.get("/license")
async def license_page(request: Request) -> Response:
    state = console(request)
    return await _page(request, await state.page(request))


@router.post("/license")
async def install(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request, "admin")
    form = await state.form(request, pg)
    try:
        document, problem = await _read(form.get("file"))
    finally:
        await form.close()
    if problem:
        return await _page(request, pg, forms.Errors({"file": problem}))
    try:
        result = await state.svc.licensing.install(document, pg.who.name)
    except ThinsyncError as exc:
        return await _page(request, pg, forms.Errors({"file": exc.message}))
    name = f"Licence {result['id']}" if result.get("id") else "The licence"
    return state.redirect(f"{BASE}/license", f"{name} installed; its state here: {result['state']}.")


async def _read(file: Any) -> tuple[Any, str]:
    """The uploaded licence file's JSON, or the reason it cannot be read."""
    if file is None or isinstance(file, str) or not file.filename:
        return None, "choose a licence file to upload"
    data = await file.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        return None, "the file is too large to be a licence file"
    try:
        return json.loads(data.decode("utf-8")), ""
    except (UnicodeDecodeError, ValueError):
        return None, "this is not a licence file: it is not JSON"
