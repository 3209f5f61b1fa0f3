"""Request helpers shared by the API routes: services, authentication, JSON bodies, If-Match."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from thinsync.auth.service import Principal
from thinsync.errors import BadRequest, UnsupportedMediaType
from thinsync.http.context import Services

JSON_TYPES = ("application/json",)
PATCH_TYPES = ("application/json", "application/merge-patch+json")


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


async def authorize(request: Request, permission: str) -> Principal:
    """Authenticate the bearer token and check one permission (called directly by hot routes: a
    FastAPI dependency costs more per request than the check itself)."""
    principal = await services(request).auth.authenticate(request.headers.get("authorization"))
    principal.require(permission)
    return principal


def require(permission: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that authenticates the bearer token and checks one permission."""

    async def dependency(request: Request) -> Principal:
        principal = await services(request).auth.authenticate(request.headers.get("authorization"))
        principal.require(permission)
        return principal

    dependency.__name__ = f"require_{permission}"
    return dependency


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


async def json_body(request: Request, allowed: tuple[str, ...] = JSON_TYPES) -> Any:
    """The parsed JSON body; 415 for another content type, 400 for malformed JSON."""
    content_type = request.headers.get("content-type", "")
    check_content_type(content_type, allowed)
    return parse_json(content_type, await request.body(), allowed)


def check_content_type(header: str, allowed: tuple[str, ...]) -> None:
    content_type = header.split(";")[0].strip().lower()
    if content_type not in allowed:
        raise UnsupportedMediaType(f"send the body as {' or '.join(allowed)} (got {content_type or 'no content type'})")


def parse_json(content_type: str, raw: bytes, allowed: tuple[str, ...] = JSON_TYPES) -> Any:
    """A request body as JSON, by the rules of `json_body` (415, 400 with a plain message)."""
    check_content_type(content_type, allowed)
    if not raw.strip():
        raise BadRequest("the request has no body; send a JSON object")
    try:
        body = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if _has_lone_surrogate(body):
        raise BadRequest("the body is not valid JSON text: a string holds half of a UTF-16 surrogate pair")
    return body


def _has_lone_surrogate(value: Any) -> bool:
    """True when a key or string holds a lone surrogate, as JSON's "\\ud800" or raw bytes give.

    Python keeps such a str, but it cannot be encoded: hashing it or echoing it in an error
    message would fail with a 500, so the body is refused at the door.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
            stack.extend(item.keys())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def if_match(request: Request) -> str | None:
    """The If-Match header as a bare version (quotes and W/ removed), or None."""
    value = request.headers.get("if-match")
    return None if value is None else plain_version(value)


def plain_version(value: str) -> str:
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def etag(version: str) -> dict[str, str]:
    return {"ETag": f'"{version}"'} if version else {}
