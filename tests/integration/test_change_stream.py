"""GET /api/v1/changes/stream on a real server: events in order, resume with `after` and Last-Event-ID,
the same errors as every route, and an open stream does not hold a shutdown."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx2
import pytest

from tests.helpers.process import ServerFactory, ServerProcess

pytestmark = pytest.mark.process
PATH = "/api/v1/changes/stream"


def read_events(
    server: ServerProcess, count: int, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[httpx2.Response, list[dict[str, Any]]]:
    """Open the stream, read `count` events (bounded by time), close it."""
    events: list[dict[str, Any]] = []
    auth = {"Authorization": f"Bearer {server.token()}", **(headers or {})}
    with (
        httpx2.Client(base_url=server.url, timeout=httpx2.Timeout(10.0, read=5.0)) as client,
        client.stream("GET", PATH, headers=auth, params=params or {}) as response,
    ):
        deadline = time.monotonic() + 10
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
            if len(events) >= count or time.monotonic() > deadline:
                break
    return response, events


def test_stream_sends_one_event_per_change_set_and_resumes_after_an_id(servers: ServerFactory) -> None:
    a = servers.start("tm-a")
    for i in range(5):
        assert a.api("PUT", f"/api/v1/display-servers/ds{i}", json={"address": f"10.0.0.{i + 1}"}).status_code == 201
    response, backlog = read_events(a, 5, params={"after": 0})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    mine = [e for e in backlog if e["items"][0]["kind"] == "display-servers"]
    assert [e["items"][0]["name"] for e in mine] == [f"ds{i}" for i in range(len(mine))]
    ids = [e["id"] for e in backlog]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    listing = {o["name"]: o["version"] for o in a.api("GET", "/api/v1/display-servers").json()["items"]}
    for event in mine:
        item = event["items"][0]
        assert item["version"] == listing[item["name"]] and item["deleted"] is False
        assert {"origin", "seq", "hlc", "author", "summary"} <= set(event)

    # Resume after the third event: exactly the rest, by query and by the Last-Event-ID header.
    cut = backlog[2]["id"]
    _, rest = read_events(a, len(backlog) - 3, params={"after": cut})
    assert [e["id"] for e in rest] == ids[3:]
    _, rest = read_events(a, len(backlog) - 3, headers={"Last-Event-ID": str(cut)})
    assert [e["id"] for e in rest] == ids[3:]


def test_live_events_arrive_while_the_stream_is_open(servers: ServerFactory) -> None:
    a = servers.start("tm-a")
    auth = {"Authorization": f"Bearer {a.token()}"}
    seen: list[dict[str, Any]] = []
    with (
        httpx2.Client(base_url=a.url, timeout=httpx2.Timeout(10.0, read=5.0)) as client,
        client.stream("GET", PATH, headers=auth) as response,
    ):
        lines = response.iter_lines()
        assert next(lines).startswith(":")  # connected
        for i in range(3):
            assert a.api("PUT", f"/api/v1/display-servers/live{i}", json={"address": "10.1.0.1"}).status_code == 201
        for line in lines:
            if line.startswith("data:"):
                seen.append(json.loads(line[5:]))
            if len(seen) == 3:
                break
    assert [e["items"][0]["name"] for e in seen] == ["live0", "live1", "live2"]
    a.api("DELETE", "/api/v1/display-servers/live0")
    _, after = read_events(a, 1, params={"after": seen[-1]["id"]})
    (item,) = after[0]["items"]
    assert (item["kind"], item["name"], item["deleted"]) == ("display-servers", "live0", True)


@pytest.mark.parametrize(
    ("params", "headers", "status"),
    [
        ({}, {}, 401),
        ({}, {"Authorization": "Bearer forged.token.here"}, 401),
        ({"after": "-1"}, None, 422),
        ({"after": "abc"}, None, 422),
        ({"after": str(2**63)}, None, 422),
    ],
)
def test_bad_requests_get_the_error_body(
    servers: ServerFactory, params: dict[str, str], headers: dict[str, str] | None, status: int
) -> None:
    a = servers.start("tm-a")
    sent = {"Authorization": f"Bearer {a.token()}"} if headers is None else headers
    response = httpx2.get(f"{a.url}{PATH}", params=params, headers=sent, timeout=10)
    assert response.status_code == status, response.text
    body = response.json()
    assert {"error", "message"} <= set(body) and body["message"]


def test_an_open_stream_does_not_hold_the_shutdown(servers: ServerFactory) -> None:
    a = servers.start("tm-a")
    sock = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    try:
        request = f"GET {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {a.token()}\r\n\r\n"
        sock.sendall(request.encode())
        assert b"200" in sock.recv(4096).split(b"\r\n")[0]
        began = time.monotonic()
        assert a.stop(timeout=10) == 0
        assert time.monotonic() - began < 5
    finally:
        sock.close()
    assert "Traceback" not in a.log_path.read_text()
