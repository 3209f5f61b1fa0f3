"""Terminal-facing routes (no admin token): boot document, iPXE script, heartbeats, watch.

These are plain Starlette routes, not FastAPI ones: a boot storm or 10,000 terminals' heartbeats
go through them, and they need none of FastAPI's validation machinery (they are documented in
docs/user-guide.md rather than in the OpenAPI document).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from thinsync.errors import BadRequest, ThinsyncError, TooLarge
from thinsync.http.context import Services

MAX_HEARTBEAT = 4096
MAX_WATCH_S = 60.0


def _error(exc: ThinsyncError) -> JSONResponse:
    return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status)


def _svc(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


async def config(request: Request) -> Response:
    try:
        boot = await _svc(request).terminals.boot(request.path_params["mac"], _client(request))
    except ThinsyncError as exc:
        return _error(exc)
    return Response(
        boot.body,
        media_type="application/json",
        headers={"ETag": f'"{boot.config_hash}"', "X-Thinsync-Config-Hash": boot.config_hash},
    )


async def ipxe(request: Request) -> Response:
    from thinsync.terminals.document import ipxe_script

    try:
        boot = await _svc(request).terminals.boot(request.path_params["mac"], _client(request))
    except ThinsyncError as exc:
        return _error(exc)
    mac = json.loads(boot.body)["terminal"]["mac"]
    return Response(ipxe_script(mac, boot.name, boot.config_hash), media_type="text/plain; charset=utf-8")


async def status(request: Request) -> Response:
    try:
        raw = await request.body()
        if len(raw) > MAX_HEARTBEAT:
            raise TooLarge(f"a heartbeat body may have at most {MAX_HEARTBEAT} bytes")
        body: Any = {}
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                raise BadRequest("the heartbeat body is not valid JSON") from None
            if not isinstance(body, dict):
                raise BadRequest("the heartbeat body must be a JSON object")
        await _svc(request).terminals.heartbeat(request.path_params["mac"], _client(request), body)
    except ThinsyncError as exc:
        return _error(exc)
    return Response(status_code=204)


async def watch(request: Request) -> Response:
    try:
        try:
            wait = min(float(request.query_params.get("wait", "30")), MAX_WATCH_S)
        except ValueError:
            raise BadRequest("wait must be a number of seconds") from None
        known = request.query_params.get("hash")
        boot = await _svc(request).terminals.watch(request.path_params["mac"], known, max(wait, 0.0))
    except ThinsyncError as exc:
        return _error(exc)
    return JSONResponse({"config_hash": boot.config_hash, "changed": known is not None and boot.config_hash != known})


routes = [
    Route("/terminal/v1/{mac}/config", config, methods=["GET"]),
    Route("/terminal/v1/{mac}/status", status, methods=["POST"]),
    Route("/terminal/v1/{mac}/watch", watch, methods=["GET"]),
    Route("/boot/{mac}.ipxe", ipxe, methods=["GET"]),
]
