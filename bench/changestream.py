"""A cheap reader of GET /api/v1/changes/stream (server-sent events) on raw asyncio streams.

The benchmarks time when a change shows up on a server's stream, so the reader must add little:
it decodes HTTP/1.1 chunked framing and SSE events by hand, stamps each read with
`time.perf_counter()` as the bytes arrive, and lets the caller skip JSON parsing of events it does
not care about (a byte-string filter).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

MAX_BUFFER = 16 * 1024 * 1024
OPEN_TIMEOUT_S = 10.0


class ChunkedSSE:
    """Incremental decoder: raw response-body bytes (chunked transfer coding) in, SSE `data:` payloads out.

    Pure (no I/O). `feed()` returns the payload of every complete event's `data:` line(s) in order;
    partial chunks and partial events are kept for the next call. Comments (`: keepalive`) and
    other fields are dropped; `event: overflow` is reported through `overflowed`.
    """

    def __init__(self) -> None:
        self._raw = b""
        self._need = -1  # bytes of chunk data still expected; -1: a size line comes next
        self._events = b""
        self.overflowed = False
        self.ended = False

    def feed(self, data: bytes) -> list[bytes]:
        self._raw += data
        if len(self._raw) > MAX_BUFFER or len(self._events) > MAX_BUFFER:
            raise ValueError("change stream buffer overrun")
        while not self.ended:
            if self._need < 0:
                end = self._raw.find(b"\r\n")
                if end < 0:
                    break
                size_text = self._raw[:end].split(b";", 1)[0].strip()
                self._raw = self._raw[end + 2 :]
                if not size_text:
                    continue  # the CRLF after a chunk's data
                size = int(size_text, 16)
                if size == 0:
                    self.ended = True
                    break
                self._need = size
            else:
                take = self._raw[: self._need]
                self._raw = self._raw[len(take) :]
                self._events += take
                self._need -= len(take)
                if self._need:
                    break
                self._need = -1
        return self._split_events()

    def _split_events(self) -> list[bytes]:
        out: list[bytes] = []
        while True:
            end = self._events.find(b"\n\n")
            if end < 0:
                return out
            block, self._events = self._events[:end], self._events[end + 2 :]
            data: list[bytes] = []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" "))
                elif line.startswith(b"event:") and line[6:].strip() == b"overflow":
                    self.overflowed = True
            if data:
                out.append(b"\n".join(data))


OnData = Callable[[bytes, float], None]


class ChangeStream:
    """One open change stream; `on_data(payload, arrived_at)` is called on the event loop for every event
    whose payload contains `needle` (all events when `needle` is empty)."""

    def __init__(self, host: str, port: int, token: str, on_data: OnData, needle: bytes = b"") -> None:
        self.host, self.port, self.token = host, port, token
        self.on_data = on_data
        self.needle = needle
        self.events = 0
        self.matched = 0
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        self.decoder = ChunkedSSE()

    async def open(self) -> None:
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self._writer = writer
            writer.write(
                (
                    f"GET /api/v1/changes/stream HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                    f"Authorization: Bearer {self.token}\r\nAccept: text/event-stream\r\n\r\n"
                ).encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if status != 200:
                raise RuntimeError(f"change stream answered HTTP {status}: {head[:200]!r}")
            if b"chunked" not in head.lower():
                raise RuntimeError("change stream is not chunked; this reader only decodes chunked bodies")
            # The first event (": connected") proves the subscription is in place before we write.
            while True:
                data = await reader.read(65536)
                if not data:
                    raise RuntimeError("change stream closed before it said connected")
                self._deliver(data, time.perf_counter())
                if b"connected" in data:
                    break
        self._task = asyncio.create_task(self._read(reader))

    def _deliver(self, data: bytes, now: float) -> None:
        for payload in self.decoder.feed(data):
            self.events += 1
            if self.needle and self.needle not in payload:
                continue
            self.matched += 1
            self.on_data(payload, now)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(262144)
                if not data:
                    return
                self._deliver(data, time.perf_counter())
                if self.decoder.ended or self.decoder.overflowed:
                    return
        except (OSError, ValueError) as exc:
            self.error = exc

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()


def item_names(payload: bytes) -> list[str]:
    """Object names in one change-set event (`{"items": [{"kind", "name", "version"}, ...]}`)."""
    event: dict[str, Any] = json.loads(payload)
    return [str(item["name"]) for item in event.get("items", [])]
