"""Helpers for tests with several paired servers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.helpers.process import ADMIN_PASSWORD, ServerProcess
from thinsync.model.registry import COLLECTIONS


def entry(server: ServerProcess, port: int | None = None) -> dict[str, Any]:
    return {"name": server.name, "address": "127.0.0.1", "port": port or server.port}


def pair(
    a: ServerProcess,
    b: ServerProcess,
    mode: str = "redundant",
    extra: list[ServerProcess] | None = None,
    ports: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Turn auto-sync on at `a` (the primary) with `b` as secondary; returns the server list."""
    ports = ports or {}
    body = {
        "auto_sync": True,
        "mode": mode,
        "primary": entry(a, ports.get(a.name)),
        "secondary": entry(b, ports.get(b.name)),
        "servers": [entry(s, ports.get(s.name)) for s in extra or []],
        "peer_auth": {"username": "admin", "password": ADMIN_PASSWORD},
    }
    response = a.api("PUT", "/api/v1/server-list", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def wait_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the server may be restarting
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last {last!r}")


def status(server: ServerProcess) -> dict[str, Any]:
    return server.api("GET", "/api/v1/sync/status").json()  # type: ignore[no-any-return]


def in_sync(*servers: ServerProcess) -> bool:
    statuses = [status(s) for s in servers]
    return all(s["in_sync"] for s in statuses) and len({s["digest"] for s in statuses}) == 1


def objects(server: ServerProcess) -> dict[str, Any]:
    """Every public kind's objects (name -> body) on a server."""
    out = {}
    for kind in COLLECTIONS:
        items = server.api("GET", f"/api/v1/{kind}").json()["items"]
        out[kind] = {o["name"]: o for o in items}
    for kind in ("settings", "server-list"):
        out[kind] = server.api("GET", f"/api/v1/{kind}").json()
    return out
