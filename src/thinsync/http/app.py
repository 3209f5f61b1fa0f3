"""The FastAPI application: routes, error rendering, limits, OpenAPI."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from thinsync import __version__
from thinsync.http import errors, openapi, peer, terminal
from thinsync.http.api import backups, kinds, license, session, sync, system, terminals
from thinsync.http.context import Services
from thinsync.http.middleware import LimitsAndMetrics

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(svc: Services, lifespan: Lifespan | None = None) -> FastAPI:
    app = FastAPI(
        title="thinsync",
        version=__version__,
        description="Thin-client management server with automatic synchronization.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = svc
    errors.install(app)
    openapi.install(app)
    app.include_router(session.router)
    app.include_router(system.router)
    app.include_router(sync.router)
    app.include_router(terminals.router)
    app.include_router(backups.router)
    app.include_router(license.router)
    app.include_router(peer.router)
    app.include_router(kinds.router(skip=frozenset({"server-list", "license"})))
    # Terminal routes first: boot storms and heartbeats should not scan the admin routes.
    app.router.routes[0:0] = terminal.routes
    app.add_middleware(
        LimitsAndMetrics,
        metrics=svc.metrics,
        max_body=svc.settings.max_body_bytes,
        max_upload=svc.settings.max_upload_bytes,
    )
    return app
