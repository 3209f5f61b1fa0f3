"""Backups, restore, the backup schedule, and history revert."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from thinsync.auth.service import Principal
from thinsync.backup.restore import PROTECTED
from thinsync.errors import BadRequest, Invalid
from thinsync.http.deps import etag, if_match, json_body, require, services
from thinsync.http.routing import PrefixRoute

router = APIRouter(route_class=PrefixRoute)
Reader = Annotated[Principal, Depends(require("read"))]
Writer = Annotated[Principal, Depends(require("write"))]
Admin = Annotated[Principal, Depends(require("admin"))]
SCHEDULE = "backup"


@router.get("/api/v1/backups", operation_id="list_backups", tags=["backups"], summary="Backups on this server")
async def list_backups(request: Request, _: Reader) -> Any:
    return {"items": await services(request).backups.list_all()}


@router.post(
    "/api/v1/backups",
    operation_id="create_backup",
    tags=["backups"],
    summary='Back up now (optional JSON body {"passphrase"} encrypts the file)',
    status_code=201,
)
async def create_backup(request: Request, who: Writer) -> Any:
    passphrase = None
    if (await request.body()).strip():
        body = await json_body(request)
        if not isinstance(body, dict) or set(body) - {"passphrase"}:
            raise Invalid('the body may only hold {"passphrase"}')
        passphrase = body.get("passphrase")
        if passphrase is not None and (not isinstance(passphrase, str) or len(passphrase) < 8):
            raise Invalid("a backup passphrase must be a string of at least 8 characters")
    manifest = await services(request).backups.create(f"by {who.name}", passphrase)
    return JSONResponse(manifest, status_code=201)


@router.get(
    "/api/v1/backups/{backup_id}/download",
    operation_id="download_backup",
    tags=["backups"],
    summary="Download a backup file",
    response_class=FileResponse,
)
async def download_backup(request: Request, backup_id: str, _: Admin) -> Any:
    path = services(request).backups.path(backup_id)
    return FileResponse(path, media_type="application/gzip", filename=path.name)


@router.delete(
    "/api/v1/backups/{backup_id}",
    operation_id="delete_backup",
    tags=["backups"],
    summary="Delete a backup",
    status_code=204,
)
async def delete_backup(request: Request, backup_id: str, who: Admin) -> Response:
    await services(request).backups.delete(backup_id, who.name)
    return Response(status_code=204)


def _include(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise Invalid("include must be a list of kinds (server-list, admins, security-groups)")


@router.post(
    "/api/v1/restore",
    operation_id="restore",
    tags=["backups"],
    summary='Restore a backup (multipart field `file`, or JSON {"backup_id"}); ?dry_run=true shows the diff',
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "backup_id": {"type": "string"},
                            "passphrase": {"type": "string"},
                            "include": {"type": "array", "items": {"type": "string"}},
                        },
                        "required": ["backup_id"],
                    }
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "passphrase": {"type": "string"},
                            "include": {"type": "string"},
                        },
                        "required": ["file"],
                    }
                },
            }
        }
    },
)
async def restore(request: Request, who: Admin, dry_run: Annotated[bool, Query()] = False) -> Any:
    svc = services(request)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form() as form:  # closes the spooled upload files whatever happens
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise BadRequest("send the backup file in the multipart field 'file'")
            data = await upload.read()
            passphrase = form.get("passphrase")
            include = _include(form.get("include"))
            label = f"uploaded file {upload.filename or ''}".strip()
    else:
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("backup_id"), str):
            raise BadRequest("send {\"backup_id\": ...} as JSON, or the file as multipart field 'file'")
        extra = set(body) - {"backup_id", "passphrase", "include"}
        if extra:
            raise Invalid(f"unknown fields: {', '.join(sorted(extra))}")
        path = svc.backups.path(body["backup_id"])
        data = await asyncio.to_thread(path.read_bytes)
        passphrase = body.get("passphrase")
        include = _include(body.get("include"))
        label = f"backup {body['backup_id']}"
    if passphrase is not None and not isinstance(passphrase, str):
        raise Invalid("passphrase must be a string")
    return await svc.backups.restore(data, passphrase, dry_run, include, who.name, label)


@router.get(
    "/api/v1/backup-schedule", operation_id="get_backup_schedule", tags=["backups"], summary="The backup schedule"
)
async def get_backup_schedule(request: Request, _: Reader) -> Any:
    svc = services(request)
    try:
        obj = await svc.config.get("schedules", SCHEDULE)
    except Exception:
        obj = {
            "name": SCHEDULE,
            "action": "backup",
            "enabled": False,
            "every_hours": 24,
            "at": None,
            "weekdays": [],
            "retention": 7,
            "description": "",
            "version": "",
        }
    return JSONResponse(obj, headers=etag(obj.get("version", "")))


@router.put(
    "/api/v1/backup-schedule",
    operation_id="put_backup_schedule",
    tags=["backups"],
    summary="Set the backup schedule (the schedule object named 'backup')",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScheduleInput"}}},
        }
    },
)
async def put_backup_schedule(request: Request, who: Writer) -> Any:
    svc = services(request)
    body = await json_body(request)
    result = await svc.config.put(who.name, "schedules", SCHEDULE, body, if_match(request))
    obj = result.object or {}
    return JSONResponse(obj, headers=etag(obj.get("version", "")))


@router.post(
    "/api/v1/history/revert",
    operation_id="history_revert",
    tags=["history"],
    summary="Revert one object to a version ({kind, name, version}) or everything to a time ({as_of})",
)
async def history_revert(request: Request, who: Writer) -> Any:
    svc = services(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise Invalid('send {"kind", "name", "version"} or {"as_of"}')
    if "as_of" in body:
        extra = set(body) - {"as_of", "dry_run", "include"}
        if extra or not isinstance(body["as_of"], str):
            raise Invalid('send {"as_of": ISO time} (with optional dry_run and include)')
        include = _include(body.get("include"))
        if include:  # accounts, the server list and the licence are changed only with the admin permission
            who.require("admin")
        return await svc.backups.revert_as_of(body["as_of"], bool(body.get("dry_run", False)), include, who.name)
    if set(body) != {"kind", "name", "version"} or not all(isinstance(v, str) for v in body.values()):
        raise Invalid('send {"kind", "name", "version"} (all strings) or {"as_of"}')
    if body["kind"] in PROTECTED:
        who.require("admin")
    return await svc.backups.revert(body["kind"], body["name"], body["version"], who.name)
