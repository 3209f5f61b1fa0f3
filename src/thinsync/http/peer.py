"""Peer routes (/peer/v1): the replication link (WebSocket) and signed requests between servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import APIRouter, Request, WebSocket
from starlette.websockets import WebSocketDisconnect

from thinsync.errors import BadRequest, ThinsyncError
from thinsync.http.context import Services
from thinsync.http.deps import services
from thinsync.http.routing import PrefixRoute
from thinsync.sync import protocol as p
from thinsync.sync.inbound import Transport

log = logging.getLogger(__name__)
router = APIRouter(tags=["peer"], route_class=PrefixRoute)


async def _signed(request: Request) -> tuple[Services, bytes]:
    svc = services(request)
    body = await request.body()
    svc.sync.verify_peer(request.headers, request.method, request.url.path, body)
    return svc, body


@router.get("/peer/v1/hello", operation_id="peer_hello", summary="Identity of this server (cluster key required)")
async def hello(request: Request) -> Any:
    svc, _ = await _signed(request)
    return svc.sync.hello()


@router.get("/peer/v1/snapshot", operation_id="peer_snapshot", summary="Every stamped object (cluster key required)")
async def snapshot(request: Request) -> Any:
    svc, _ = await _signed(request)
    return await asyncio.to_thread(svc.store.snapshot)


@router.post("/peer/v1/unpair", operation_id="peer_unpair", summary="The other server turned synchronization off")
async def unpair(request: Request) -> Any:
    svc, body = await _signed(request)
    data = _json(body)
    await svc.sync.accept_unpair(str(data.get("by", "the other server")))
    return {"ok": True}


@router.post(
    "/peer/v1/pair",
    operation_id="peer_pair",
    summary="Join another server's cluster (authorised by this server's admin credentials or a pairing code)",
)
async def pair(request: Request) -> Any:
    svc = services(request)
    data = _json(await request.body())
    client = request.client.host if request.client else "?"
    for key in ("cluster_id", "cluster_key", "auth", "server_list", "node"):
        if key not in data:
            raise BadRequest(f"a pairing request needs '{key}'")
    return await svc.sync.accept_pair(data, client)


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


@router.websocket("/peer/v1/link")
async def link(websocket: WebSocket) -> None:
    svc: Services = websocket.app.state.services
    headers = {k.lower(): v for k, v in websocket.headers.items()}
    try:
        claim = svc.sync.verify_peer(headers, "GET", "/peer/v1/link", b"")
    except ThinsyncError:
        await websocket.close(code=1008)
        return
    await websocket.accept()

    async def receive() -> str:
        return await websocket.receive_text()

    transport = Transport(receive=receive, send=websocket.send_text)
    try:
        await svc.sync.serve_link(transport, claim)
    except (WebSocketDisconnect, TimeoutError, asyncio.CancelledError):
        pass
    except p.FrameError as exc:
        svc.events.record("sync", f"closed a link from node {claim.node_id}: {exc.message}", level="warning")
    except ThinsyncError as exc:
        log.warning("link from %s ended: %s", claim.node_id, exc.message)
    finally:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close()
