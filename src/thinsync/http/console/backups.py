"""Manage > Backup / Restore: back up now, the list with downloads, restore with its dry-run diff
and a confirmation, restore from an uploaded file, and the backup schedule editor."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from thinsync.errors import Invalid, NotFound, ThinsyncError
from thinsync.http.console import forms
from thinsync.http.console.web import BASE, Page, console

router = APIRouter()
SCHEDULE = "backup"
PROTECTED = (
    ("server-list", "the server list"),
    ("admins", "admin accounts"),
    ("security-groups", "security groups"),
)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


async def _schedule(request: Request) -> dict[str, Any]:
    try:
        return await console(request).svc.config.get("schedules", SCHEDULE)
    except NotFound:
        return {"enabled": False, "every_hours": 24, "at": None, "weekdays": [], "retention": 7, "version": ""}


async def _page(
    request: Request, pg: Page, schedule: dict[str, Any] | None = None, errors: forms.Errors | None = None
) -> Response:
    state = console(request)
    return await state.render(
        request,
        pg,
        "backups.html",
        help="backups",
        title="Backup / Restore",
        backups=await state.svc.backups.list_all(),
        schedule=schedule or await _schedule(request),
        errors=errors or forms.Errors(),
        weekdays=WEEKDAYS,
        may_edit=pg.may_edit("write"),
        may_admin=pg.can("admin"),
    )


@router.get("/backups")
async def backups_page(request: Request) -> Response:
    state = console(request)
    return await _page(request, await state.page(request))


@router.post("/backups")
async def back_up_now(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request, "write")
    await state.form(request, pg)
    manifest = await state.svc.backups.create(f"by {pg.who.name} (console)")
    return state.redirect(f"{BASE}/backups", f"Backup {manifest['id']} written.")


@router.get("/backups/{backup_id}/download")
async def download(request: Request, backup_id: str) -> Response:
    state = console(request)
    await state.page(request, "admin")
    path = state.svc.backups.path(backup_id)
    return FileResponse(path, media_type="application/gzip", filename=path.name)


@router.post("/backups/schedule")
async def save_schedule(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request, "write")
    form = await state.form(request, pg)
    errors = forms.Errors()
    rule = str(form.get("rule") or "every")
    body: dict[str, Any] = {
        "action": "backup",
        "enabled": form.get("enabled") is not None,
        "description": "backup schedule (console)",
        "weekdays": [],
    }
    for key, label in (("retention", "keep"), ("every_hours", "every")):
        text = str(form.get(key) or "").strip()
        if key == "every_hours" and rule != "every":
            continue
        try:
            body[key] = int(text)
        except ValueError:
            errors.add(key, f"{label}: enter a whole number")
    if rule == "at":
        body["at"] = str(form.get("at") or "").strip()
        if not body["at"]:
            errors.add("at", "enter a time of day as HH:MM")
        try:
            body["weekdays"] = sorted(int(d) for d in form.getlist("weekdays"))
        except ValueError:
            errors.add("weekdays", "pick days from the list")
    version = str(form.get("version") or "") or None
    if not errors:
        try:
            await state.svc.config.put(pg.who.name, "schedules", SCHEDULE, body, version)
            return state.redirect(f"{BASE}/backups", "Backup schedule saved.")
        except ThinsyncError as exc:
            if exc.status == 412:
                exc = Invalid("someone changed the schedule meanwhile; reload the page")
            elif "every_hours" in exc.message and "at" in exc.message and not exc.details.get("fields"):
                exc = Invalid(exc.message, fields=[{"field": "at", "message": exc.message}])
            forms.place(exc, ["enabled", "every_hours", "at", "weekdays", "retention"], errors)
    shown = {**body, "version": version or "", "rule": rule}
    return await _page(request, pg, shown, errors)


# ---------------------------------------------------------------------- restore


@router.post("/restore/upload")
async def upload(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request, "admin")
    form = await state.form(request, pg)
    file = form.get("file")
    if file is None or isinstance(file, str) or not file.filename:
        return await _page(request, pg, errors=forms.Errors({"file": "choose a backup file to upload"}))
    data = await file.read()
    key = state.keep_upload(data, f"uploaded file {file.filename}", time.time())
    return state.redirect(f"{BASE}/restore?upload={key}")


async def _source(request: Request, backup: str, upload: str) -> tuple[bytes, str]:
    state = console(request)
    if upload:
        found = state.uploads.get(upload)
        if found is None:
            raise NotFound("that upload has expired (uploads are kept 15 minutes); upload the file again")
        return found[0], found[1]
    if not backup:
        raise Invalid("choose a backup to restore")
    path = state.svc.backups.path(backup)
    return await asyncio.to_thread(path.read_bytes), f"backup {backup}"


def _include(form: Any) -> list[str]:
    return [kind for kind, _ in PROTECTED if form.get(f"include_{kind}") is not None]


async def _restore_page(
    request: Request,
    pg: Page,
    backup: str,
    upload: str,
    values: dict[str, Any],
    errors: forms.Errors,
    result: dict[str, Any] | None = None,
    done: bool = False,
) -> Response:
    state = console(request)
    return await state.render(
        request,
        pg,
        "restore.html",
        help="restore",
        title="Restore",
        backup=backup,
        upload=upload,
        values=values,
        errors=errors,
        result=result,
        done=done,
        protected=PROTECTED,
        may_edit=pg.may_edit("admin"),
    )


@router.get("/restore")
async def restore_preview(request: Request, backup: str = "", upload: str = "") -> Response:
    state = console(request)
    pg = await state.page(request, "admin")
    return await _dry_run(request, pg, backup, upload, {"passphrase": "", "include": []})


async def _dry_run(
    request: Request, pg: Page, backup: str, upload: str, values: dict[str, Any], errors: forms.Errors | None = None
) -> Response:
    """Verify the file and show what restoring it would change (nothing is written)."""
    state = console(request)
    errors = errors or forms.Errors()
    data, label = await _source(request, backup, upload)
    values["label"] = label
    try:
        result = await state.svc.backups.restore(
            data, values.get("passphrase") or None, True, values["include"], pg.who.name, label
        )
    except ThinsyncError as exc:
        if "passphrase" in exc.message:
            errors.add("passphrase", exc.message)
        else:
            errors.general.append(exc.message)
        return await _restore_page(request, pg, backup, upload, values, errors)
    return await _restore_page(request, pg, backup, upload, values, errors, result)


@router.post("/restore")
async def restore(request: Request) -> Response:
    state = console(request)
    pg = await state.page(request, "admin")
    form = await state.form(request, pg)
    backup = str(form.get("backup") or "")
    upload_key = str(form.get("upload") or "")
    values: dict[str, Any] = {"passphrase": str(form.get("passphrase") or ""), "include": _include(form)}
    if str(form.get("action") or "") != "restore":
        return await _dry_run(request, pg, backup, upload_key, values)
    if form.get("confirm") is None:
        errors = forms.Errors({"confirm": "tick this box to confirm the restore"})
        return await _dry_run(request, pg, backup, upload_key, values, errors)
    data, label = await _source(request, backup, upload_key)
    values["label"] = label
    errors = forms.Errors()
    try:
        result = await state.svc.backups.restore(
            data, values["passphrase"] or None, False, values["include"], pg.who.name, label
        )
    except ThinsyncError as exc:
        errors.general.append(exc.message)
        return await _restore_page(request, pg, backup, upload_key, values, errors)
    state.uploads.pop(upload_key, None)
    return await _restore_page(request, pg, backup, upload_key, values, errors, result, done=True)
