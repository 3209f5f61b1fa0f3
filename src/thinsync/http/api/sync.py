"""Server list, discover, pairing code, synchronization status, conflicts, promote; backups list."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from thinsync.auth.service import Principal
from thinsync.errors import Invalid
from thinsync.http.deps import PATCH_TYPES, etag, if_match, json_body, require, services
from thinsync.http.openapi import body_spec
from thinsync.http.routing import PrefixRoute
from thinsync.model.registry import KINDS
from thinsync.model.validate import merge_patch

router = APIRouter(route_class=PrefixRoute)
Reader = Annotated[Principal, Depends(require("read"))]
Writer = Annotated[Principal, Depends(require("write"))]
Admin = Annotated[Principal, Depends(require("admin"))]


@router.get("/api/v1/server-list", operation_id="get_server_list", tags=["server-list"], summary="Read the server list")
async def get_server_list(request: Request, _: Reader) -> Any:
    obj = await services(request).config.get("server-list")
    return JSONResponse(obj, headers=etag(obj["version"]))


_server_list_body = body_spec(KINDS["server-list"])
_server_list_body["requestBody"]["content"]["application/json"]["schema"] = {
    "allOf": [
        {"$ref": "#/components/schemas/ServerListInput"},
        {
            "type": "object",
            "properties": {
                "peer_auth": {
                    "type": "object",
                    "description": "the other server's admin credentials {username, password} or {pairing_code}",
                }
            },
        },
    ]
}


@router.put(
    "/api/v1/server-list",
    operation_id="put_server_list",
    tags=["server-list"],
    summary="Replace the server list; turning auto_sync on pairs with the other server",
    openapi_extra=_server_list_body,
)
async def put_server_list(request: Request, who: Admin) -> Any:
    body = await json_body(request)
    obj = await services(request).sync.set_server_list(body, who.name, if_match(request))
    return JSONResponse(obj, headers=etag(obj["version"]))


@router.patch(
    "/api/v1/server-list",
    operation_id="patch_server_list",
    tags=["server-list"],
    summary="Change some of the server list (JSON merge patch); turning auto_sync on pairs",
    openapi_extra=body_spec(KINDS["server-list"], patch=True),
)
async def patch_server_list(request: Request, who: Admin) -> Any:
    svc = services(request)
    patch = await json_body(request, PATCH_TYPES)
    if not isinstance(patch, dict):
        raise Invalid("a merge patch must be a JSON object")
    current = await svc.config.get("server-list")
    current.pop("version", None)
    peer_auth = patch.pop("peer_auth", None)
    body = merge_patch(current, patch)
    if peer_auth is not None:
        body["peer_auth"] = peer_auth
    obj = await svc.sync.set_server_list(body, who.name, if_match(request))
    return JSONResponse(obj, headers=etag(obj["version"]))


class DiscoverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=253)
    port: int = Field(2031, ge=1, le=65535)


@router.post("/api/v1/discover", operation_id="discover", tags=["sync"], summary="Resolve a server name")
async def discover(request: Request, body: DiscoverIn, _: Reader) -> Any:
    return await services(request).sync.discover(body.name, body.port)


@router.post("/api/v1/pairing-code", operation_id="pairing_code", tags=["sync"], summary="Show a one-time pairing code")
async def pairing_code(request: Request, who: Admin) -> Any:
    svc = services(request)
    code, expires = svc.sync.codes.issue()
    svc.events.record("sync", f"{who.name} showed a pairing code")
    return {"pairing_code": code, "expires": expires}


@router.get("/api/v1/sync/status", operation_id="sync_status", tags=["sync"], summary="Synchronization status")
async def sync_status(request: Request, _: Reader) -> Any:
    svc = services(request)
    status = await svc.sync.status()
    licence = await asyncio.to_thread(svc.licensing.check)
    status["license"] = {k: licence.get(k) for k in ("mode", "state", "problems", "grace_until")}
    return status


@router.post("/api/v1/sync/now", operation_id="sync_now", tags=["sync"], summary="Push and compare digests now")
async def sync_now(request: Request, _: Writer) -> Any:
    svc = services(request)
    svc.sync.sync_now()
    return await svc.sync.status()


@router.post(
    "/api/v1/sync/promote", operation_id="sync_promote", tags=["sync"], summary="Make this secondary the primary"
)
async def promote(request: Request, who: Admin) -> Any:
    return await services(request).sync.promote(who.name)


class ManualIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    source: str = Field(alias="from", min_length=1, max_length=64)
    target: str = Field(alias="to", min_length=1, max_length=64)
    dry_run: bool = True
    peer_auth: dict[str, str] | None = None


@router.post(
    "/api/v1/sync/manual",
    operation_id="sync_manual",
    tags=["sync"],
    summary="Copy the whole configuration from another server to this one (auto-sync off only)",
)
async def sync_manual(request: Request, body: ManualIn, who: Admin) -> Any:
    return await services(request).sync.manual(body.source, body.target, body.dry_run, body.peer_auth, who.name)


@router.get("/api/v1/sync/conflicts", operation_id="sync_conflicts", tags=["sync"], summary="Recorded conflicts")
async def conflicts(request: Request, _: Reader, all: bool = False) -> Any:  # noqa: A002
    return {"items": await services(request).sync.conflicts(open_only=not all)}


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep: str = Field(pattern="^(winner|other)$")


@router.post(
    "/api/v1/sync/conflicts/{conflict_id}/resolve",
    operation_id="sync_resolve",
    tags=["sync"],
    summary="Resolve a conflict: keep the winner or the other value",
)
async def resolve(request: Request, conflict_id: str, body: ResolveIn, who: Writer) -> Any:
    return await services(request).sync.resolve(conflict_id, body.keep, who.name)
