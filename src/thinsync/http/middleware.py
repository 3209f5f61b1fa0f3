"""One pure-ASGI middleware: request body limits (413 early) and request metrics."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thinsync import jsonfmt
from thinsync.metrics import Metrics

UPLOAD_PATHS = ("/api/v1/restore", "/api/v1/backups", "/console/restore")


class BodyTooLarge(Exception):
    """Raised from `receive` when the body passes the limit; the middleware answers 413."""


async def send_json(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A whole JSON response in plain ASGI (for the paths that answer without FastAPI)."""
    data = jsonfmt.dumpb(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(data)).encode()),
                (b"content-type", b"application/json"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _send_413(send: Send, limit: int) -> None:
    message = f"the request body is larger than the limit of {limit} bytes"
    await send_json(send, 413, {"error": "too_large", "message": message})


class LimitsAndMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body: int, max_upload: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.max_upload = max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.max_upload if path.startswith(UPLOAD_PATHS) else self.max_body
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await _send_413(send, limit)
                    self.metrics.http_requests.labels(scope["method"], "413").inc()
                    return
        received = 0
        started = False
        status = 500

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
            await send(message)

        begin = time.perf_counter()
        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _send_413(send, limit)
            status = 413
        finally:
            if not path.startswith(("/api/v1/changes/stream",)):
                self.metrics.http_seconds.observe(time.perf_counter() - begin)
            self.metrics.http_requests.labels(scope["method"], str(status)).inc()
