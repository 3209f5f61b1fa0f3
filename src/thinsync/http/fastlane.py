"""The lean path for writing one object: `PUT /api/v1/{kind}/{name}` answered in plain ASGI.

A single-object PUT is the API's hot write. Through FastAPI it spent most of its CPU in routing,
the request/response wrappers and exception middleware rather than in the write itself
(bench/results/write_api.md); here the same steps run directly: the same bearer check, the same
body rules (`deps.parse_json`), the same `ConfigService.put`, the same error body. The FastAPI
route stays registered: it documents the operation in the OpenAPI document and answers whatever
this lane passes on (another method, a path that is not one object of a collection kind).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from thinsync.errors import ThinsyncError
from thinsync.http.context import Services
from thinsync.http.deps import JSON_TYPES, check_content_type, parse_json, plain_version
from thinsync.http.middleware import BodyTooLarge, send_json
from thinsync.model.registry import ACCOUNT_KINDS, KINDS

log = logging.getLogger(__name__)

PREFIX = "/api/v1/"


class KindPutLane:
    """Serves PUT of one object of a collection kind; passes every other request to `app`."""

    def __init__(self, app: ASGIApp, svc: Services, skip: frozenset[str]) -> None:
        self.app = app
        self.svc = svc
        # kind -> permission needed to write it
        self.kinds = {
            spec.name: ("admin" if spec.name in ACCOUNT_KINDS else "write")
            for spec in KINDS.values()
            if not spec.singleton and not spec.internal and spec.name not in skip
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "PUT":
            path: str = scope["path"]
            if path.startswith(PREFIX):
                kind, slash, name = path[len(PREFIX) :].partition("/")
                if slash and name and "/" not in name and kind in self.kinds:
                    with contextlib.suppress(ClientGone):
                        await self._put(scope, receive, send, kind, name)
                    return
        await self.app(scope, receive, send)

    async def _put(self, scope: Scope, receive: Receive, send: Send, kind: str, name: str) -> None:
        headers: dict[bytes, bytes] = dict(scope["headers"])
        try:
            principal = await self.svc.auth.authenticate(_header(headers, b"authorization"))
            principal.require(self.kinds[kind])
            content_type = _header(headers, b"content-type") or ""
            check_content_type(content_type, JSON_TYPES)
            body = parse_json(content_type, await _read_body(receive), JSON_TYPES)
            if_match = _header(headers, b"if-match")
            result = await self.svc.config.put(
                principal.name, kind, name, body, plain_version(if_match) if if_match is not None else None
            )
        except ThinsyncError as exc:
            if exc.status >= 500:
                log.error("PUT %s failed: %s", scope["path"], exc.message)
            await _respond(send, exc.status, exc.to_dict(), www_authenticate=exc.status == 401)
            return
        except (BodyTooLarge, ClientGone):
            raise
        except Exception:
            log.exception("unexpected error on PUT %s", scope["path"])
            message = "the server hit an unexpected error; it has been logged"
            await _respond(send, 500, {"error": "internal", "message": message})
            return
        obj = result.object or {}
        version = str(obj.get("version", ""))
        await _respond(send, 201 if result.created else 200, obj, etag=version)


class ClientGone(Exception):
    """The client disconnected before the whole body arrived: nobody is left to answer."""


def _header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: dict[str, Any], etag: str = "", www_authenticate: bool = False
) -> None:
    headers = [(b"etag", f'"{etag}"'.encode())] if etag else []
    if www_authenticate:
        headers.append((b"www-authenticate", b"Bearer"))
    await send_json(send, status, body, headers)
