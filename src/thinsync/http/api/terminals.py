"""Terminal status lights for administrators."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from thinsync.auth.service import Principal
from thinsync.http.deps import require, services
from thinsync.http.routing import PrefixRoute

router = APIRouter(route_class=PrefixRoute)
Reader = Annotated[Principal, Depends(require("read"))]


@router.get(
    "/api/v1/terminal-status",
    operation_id="terminal_status",
    tags=["terminals"],
    summary="Every terminal's status light as this server sees it (online, offline, never)",
)
async def terminal_status(request: Request, _: Reader) -> Any:
    return {"items": await services(request).terminals.status()}
