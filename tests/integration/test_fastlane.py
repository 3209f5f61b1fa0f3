"""The lean PUT path (http/fastlane.py) answers exactly as the FastAPI route it stands in front of."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from tests.helpers.inprocess import InProcess
from thinsync.http.fastlane import KindPutLane

pytestmark = pytest.mark.anyio

DS = "/api/v1/display-servers"
STAMP = re.compile(r"[0-9a-f]{16}\.[0-9a-f]+\.\d+")
# (method, path, user, headers, body): each runs after the ones before it, on a fresh server.
CASES: list[tuple[str, str, str | None, dict[str, str], Any]] = [
    ("PUT", f"{DS}/ds-1", "admin", {}, {"address": "10.0.0.1"}),
    ("PUT", f"{DS}/ds-1", "admin", {}, {"address": "10.0.0.2", "description": "replaced"}),
    ("PUT", f"{DS}/ds-1", "admin", {"If-Match": '"0000000000000001.x.1"'}, {"address": "10.0.0.3"}),
    ("PUT", f"{DS}/ds-2", "admin", {"Content-Type": "text/plain"}, "address=10.0.0.4"),
    ("PUT", f"{DS}/ds-2", "admin", {"Content-Type": "application/json"}, b'{"address": '),
    ("PUT", f"{DS}/ds-2", "admin", {"Content-Type": "application/json"}, b""),
    ("PUT", f"{DS}/ds-2", "admin", {}, {"address": "10.0.0.5", "colour": "red"}),
    ("PUT", f"{DS}/bad name!", "admin", {}, {"address": "10.0.0.6"}),
    ("PUT", f"{DS}/ds-2", None, {}, {"address": "10.0.0.7"}),
    ("PUT", f"{DS}/ds-2", None, {"Authorization": "Bearer forged.token"}, {"address": "10.0.0.7"}),
    ("PUT", f"{DS}/ds-2", "viewer", {}, {"address": "10.0.0.8"}),
    ("PUT", "/api/v1/terminals/t-1", "admin", {}, {"hardware": {"mac": "02-00-00-00-00-01"}, "screens": [{}]}),
    ("PUT", "/api/v1/terminals/t-2", "admin", {}, {"hardware": {"mac": "02:00:00:00:00:01"}}),
    ("PUT", "/api/v1/terminals/t-3", "admin", {}, {"hardware": {"mac": "02:00:00:00:00:03"}, "group": "nope"}),
    ("PUT", "/api/v1/admins/op-1", "viewer", {}, {"password": "password-123"}),
    ("PUT", f"{DS}/ds-1/extra", "admin", {}, {"address": "10.0.0.9"}),
]


async def _run(server: InProcess) -> list[tuple[int, Any, dict[str, str]]]:
    await server.make_user("viewer", ["viewers"])
    out = []
    for method, path, user, headers, body in CASES:
        kwargs: dict[str, Any] = {"headers": dict(headers)}
        if isinstance(body, bytes | str):
            kwargs["content"] = body
        else:
            kwargs["json"] = body
        if user is None:
            response = await server.client.request(method, path, **kwargs)
        else:
            response = await server.call(method, path, user=user, **kwargs)
        data = response.json()
        if isinstance(data, dict):  # stamps and node ids differ between the two servers
            data.pop("version", None)
            data["message"] = STAMP.sub("<stamp>", str(data.get("message", "")))
        seen = {k: response.headers[k] for k in ("content-type", "www-authenticate") if k in response.headers}
        seen["etag"] = "yes" if "etag" in response.headers else "no"
        out.append((response.status_code, data, seen))
    return out


@pytest.fixture
async def without_lane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[InProcess]:
    async def passthrough(self: KindPutLane, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    monkeypatch.setattr(KindPutLane, "__call__", passthrough)
    server = InProcess.create(tmp_path / "other")
    try:
        yield server
    finally:
        await server.aclose()


async def test_lean_put_answers_like_the_fastapi_route(
    inproc: InProcess, without_lane: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = await _run(without_lane)
    monkeypatch.undo()  # the lane is back
    handled: list[str] = []
    original = KindPutLane._put

    async def counted(self: KindPutLane, scope: Scope, receive: Receive, send: Send, kind: str, name: str) -> None:
        handled.append(name)
        await original(self, scope, receive, send, kind, name)

    monkeypatch.setattr(KindPutLane, "_put", counted)
    fast = await _run(inproc)
    statuses = [s for s, _, _ in slow]
    assert statuses == [201, 200, 412, 415, 400, 400, 422, 422, 401, 401, 403, 201, 409, 422, 403, 404]
    assert fast == slow
    # Every PUT of one object went through the lane (the make_user PUT too); the deeper path did not.
    assert len(handled) == len(CASES) and "ds-1/extra" not in handled
