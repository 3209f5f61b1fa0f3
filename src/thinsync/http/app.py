"""The FastAPI application: routes, error rendering, limits, OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from thinsync import __version__
from thinsync.http import errors, openapi, peer, terminal
from thinsync.http.api import backups, kinds, license, session, sync, system, terminals
from thinsync.http.changestream import ChangeStreamLane
from thinsync.http.console import BASE as CONSOLE_BASE
from thinsync.http.console import create_console
from thinsync.http.context import Services
from thinsync.http.fastlane import KindPutLane
from thinsync.http.middleware import LimitsAndMetrics

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
# Singletons with routes of their own (not the generic kind routes).
SERVED_ELSEWHERE = frozenset({"server-list", "license"})


def create_app(svc: Services, lifespan: Lifespan | None = None) -> FastAPI:
    console_app, console = create_console(svc)

    @asynccontextmanager
    async def with_console(app: FastAPI) -> AsyncIterator[None]:
        # The console's lag sampler runs while the server serves (a mounted app has no lifespan).
        async with AsyncExitStack() as stack:
            if lifespan is not None:
                await stack.enter_async_context(lifespan(app))
            console.start()
            try:
                yield
            finally:
                await console.stop()

    app = FastAPI(
        title="thinsync",
        version=__version__,
        description="Thin-client management server with automatic synchronization.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=with_console,
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
    app.include_router(kinds.router(skip=SERVED_ELSEWHERE))
    app.mount(CONSOLE_BASE, console_app, name="console")
    # Terminal routes first: boot storms and heartbeats should not scan the admin routes.
    app.router.routes[0:0] = terminal.routes
    return app


def serving_stack(app: FastAPI, svc: Services) -> ASGIApp:
    """What uvicorn serves: the limits and metrics around everything, then the two hot paths in plain
    ASGI — a PUT of one object (fastlane.py) and the change stream (changestream.py) — in front of
    FastAPI, so they skip its routing and its exception and telemetry wrappers; the rest goes to `app`."""
    inner = ChangeStreamLane(KindPutLane(app, svc=svc, skip=SERVED_ELSEWHERE), svc=svc)
    return LimitsAndMetrics(
        inner, metrics=svc.metrics, max_body=svc.settings.max_body_bytes, max_upload=svc.settings.max_upload_bytes
    )
