"""Log-in and who am I."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from thinsync.auth.service import Principal
from thinsync.errors import Unauthorized
from thinsync.http.deps import require, services
from thinsync.http.routing import PrefixRoute

router = APIRouter(tags=["session"], route_class=PrefixRoute)


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


@router.post("/api/v1/login", operation_id="login", summary="Exchange a user name and password for a bearer token")
async def login(request: Request, body: LoginIn) -> Any:
    svc = services(request)
    client = request.client.host if request.client else "?"
    try:
        token, expires = await svc.auth.login(body.username, body.password)
    except Unauthorized:
        svc.metrics.logins.labels("failed").inc()
        svc.events.record("auth", f"failed log-in as '{body.username}' from {client}", level="warning")
        raise
    svc.metrics.logins.labels("ok").inc()
    svc.events.record("auth", f"'{body.username}' logged in from {client}")
    return {"token": token, "expires": expires}


@router.get("/api/v1/session", operation_id="session", summary="The account behind the token")
async def session(who: Annotated[Principal, Depends(require("read"))]) -> Any:
    return {"name": who.name, "permissions": sorted(who.permissions)}
