"""The licence: read it, install a signed licence file."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from thinsync.auth.service import Principal
from thinsync.http.deps import json_body, require, services
from thinsync.http.routing import PrefixRoute

router = APIRouter(route_class=PrefixRoute)
Reader = Annotated[Principal, Depends(require("read"))]
Admin = Annotated[Principal, Depends(require("admin"))]


@router.get("/api/v1/license", operation_id="get_license", tags=["license"], summary="The licence and its state")
async def get_license(request: Request, _: Reader) -> Any:
    return await asyncio.to_thread(services(request).licensing.check)


@router.put(
    "/api/v1/license",
    operation_id="put_license",
    tags=["license"],
    summary="Install a signed licence file (the file's JSON as the body)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "format": {"type": "string"},
                            "format_version": {"type": "integer"},
                            "license": {"type": "object"},
                            "issuer": {"type": "string"},
                            "signature": {"type": "string"},
                        },
                        "required": ["format", "license", "issuer", "signature"],
                    }
                }
            },
        }
    },
)
async def put_license(request: Request, who: Admin) -> Any:
    body = await json_body(request)
    return await services(request).licensing.install(body, who.name)
