"""The change stream (`GET /api/v1/changes/stream`): one server-sent event per committed change set.

The events are the end of the replication path (a change made on the other server shows here once
it is applied and durable), so they are sent with as little in between as possible: `events()` is
one async generator, woken once per commit; `ChangeStreamLane` serves a valid request in plain ASGI
(the same bearer check and `after` rule as the FastAPI route) so every event skips FastAPI's
response and exception wrappers. The FastAPI route stays registered: it documents the operation in
OpenAPI and answers whatever the lane passes on (a bad token, a bad `after`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from thinsync import jsonfmt
from thinsync.errors import ThinsyncError
from thinsync.http.context import Services
from thinsync.store import ChangeSet

log = logging.getLogger(__name__)
PATH = "/api/v1/changes/stream"
STREAM_QUEUE = 10_000
KEEPALIVE_S = 15.0
MAX_AFTER = 2**62
# Events already waiting are sent together (one write) up to this many.
BURST = 256
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
KEEPALIVE = b": keepalive\n\n"
OVERFLOW = b"event: overflow\ndata: {}\n\n"


def sse(change: ChangeSet) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (change.id, jsonfmt.dumpb(change.event()))


async def events(svc: Services, after: int | None) -> AsyncGenerator[bytes, None]:
    """`: connected`, then the backlog after `after` (when given), then one event per change set as it
    is committed, until the server shuts down. A reader more than STREAM_QUEUE behind is cut off with an
    `overflow` event; it reconnects with `after` and loses nothing."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[ChangeSet] | None] = asyncio.Queue()
    waiting = 0
    overflowed = False

    def put(changes: list[ChangeSet]) -> None:
        nonlocal waiting, overflowed
        if waiting + len(changes) > STREAM_QUEUE:
            overflowed = True
            queue.put_nowait(None)
            return
        waiting += len(changes)
        queue.put_nowait(changes)

    def on_change(changes: list[ChangeSet]) -> None:  # in the writer thread
        loop.call_soon_threadsafe(put, changes)

    svc.store.subscribe(on_change)
    shutdown = asyncio.ensure_future(svc.shutdown.wait())
    shutdown.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        yield b": connected\n\n"
        last = after or 0
        if after is not None:
            while True:
                backlog = await asyncio.to_thread(svc.store.changes_since, last, 500)
                if backlog:
                    yield b"".join(sse(change) for change in backlog)
                    last = backlog[-1].id
                if len(backlog) < 500:
                    break
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    batch = await queue.get()
            except TimeoutError:
                yield KEEPALIVE
                continue
            if batch is None:
                if overflowed:
                    yield OVERFLOW
                break
            batches = [batch]
            while len(batches) < BURST and not queue.empty():
                more = queue.get_nowait()
                if more is None:
                    queue.put_nowait(None)  # seen on the next round, after these are sent
                    break
                batches.append(more)
            chunk = []
            for changes in batches:
                waiting -= len(changes)
                for change in changes:
                    if change.id > last:  # the backlog may have sent it already
                        chunk.append(sse(change))
                        last = change.id
            if chunk:
                yield b"".join(chunk)
    finally:
        svc.store.unsubscribe(on_change)
        shutdown.cancel()


def parse_after(query: str, last_event_id: str | None) -> tuple[bool, int | None]:
    """(valid, after) from the query string and the Last-Event-ID header, by the route's rules."""
    after: int | None = None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "after" or after is not None or not value.isascii() or not value.isdigit():
            return False, None
        after = int(value)
        if after > MAX_AFTER:
            return False, None
    if after is None and last_event_id and last_event_id.isascii() and last_event_id.isdigit():
        after = int(last_event_id)
    return True, after


class ChangeStreamLane:
    """Serves a valid change-stream request in plain ASGI; passes every other request to `app`."""

    def __init__(self, app: ASGIApp, svc: Services) -> None:
        self.app = app
        self.svc = svc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == PATH:
            headers: dict[bytes, bytes] = dict(scope["headers"])
            authorization = headers.get(b"authorization")
            last_id = headers.get(b"last-event-id")
            valid, after = parse_after(
                scope.get("query_string", b"").decode("latin-1"), last_id.decode("latin-1") if last_id else None
            )
            if valid and authorization is not None:
                try:
                    principal = await self.svc.auth.authenticate(authorization.decode("latin-1"))
                    principal.require("read")
                except ThinsyncError:
                    pass  # the FastAPI route answers it, with the same error body as every route
                else:
                    await self._stream(receive, send, after)
                    return
        await self.app(scope, receive, send)

    async def _stream(self, receive: Receive, send: Send, after: int | None) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        stream = events(self.svc, after)

        async def pump() -> None:
            async for chunk in stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async def gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(gone())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            await stream.aclose()
        failure = outcomes[0]
        if isinstance(failure, Exception) and not isinstance(failure, OSError):
            log.error("the change stream failed", exc_info=failure)
        elif tasks[0] in done and failure is None:  # the server is shutting down: end the response
            with contextlib.suppress(OSError, RuntimeError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
