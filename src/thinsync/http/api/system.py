"""Change stream, event log, history, health and metrics."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from thinsync import __version__
from thinsync.auth.service import Principal
from thinsync.config.service import kind_spec
from thinsync.events.log import CATEGORIES
from thinsync.http import changestream
from thinsync.http.deps import require, services
from thinsync.http.routing import PrefixRoute
from thinsync.model.validate import SINGLETON_NAME

router = APIRouter(route_class=PrefixRoute)
Reader = Annotated[Principal, Depends(require("read"))]


@router.get("/api/v1/events", operation_id="events", tags=["events"], summary="This server's event log, newest first")
async def events(
    request: Request,
    _: Reader,
    category: Annotated[str | None, Query(description=f"one of {', '.join(CATEGORIES)}")] = None,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    return {"items": await services(request).events.list(category, after, limit)}


@router.get("/api/v1/history", operation_id="history", tags=["history"], summary="An object's versions, newest first")
async def history(
    request: Request,
    _: Reader,
    kind: Annotated[str, Query(max_length=64)],
    name: Annotated[str, Query(max_length=256)] = SINGLETON_NAME,
) -> Any:
    spec = kind_spec(kind)
    return {"items": await services(request).config.history(spec.name, name)}


@router.get(
    changestream.PATH,
    operation_id="changes_stream",
    tags=["changes"],
    summary="Server-sent events: one per committed change set (local or replicated)",
    response_class=StreamingResponse,
)
async def changes_stream(
    request: Request,
    _: Reader,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="resume after this event id")] = None,
) -> StreamingResponse:
    last_id = request.headers.get("last-event-id")
    if after is None and last_id and last_id.isdigit():
        after = int(last_id)
    return StreamingResponse(
        changestream.events(services(request), after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/healthz", operation_id="healthz", tags=["system"], summary="200 whenever this server serves")
async def healthz(request: Request) -> Any:
    identity = services(request).store.require_identity()
    return {"status": "ok", "name": identity.name, "node_id": identity.node_id, "version": __version__}


@router.get("/metrics", operation_id="metrics", tags=["system"], summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    body = await asyncio.to_thread(services(request).metrics.render)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/", include_in_schema=False)
async def home() -> RedirectResponse:
    """The web console lives under /console/."""
    return RedirectResponse("/console/", status_code=307)
