"""Shared checks for the in-process API tests: the error body shape, "nothing was written", seed data."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx2

from tests.helpers.inprocess import InProcess
from thinsync.model.registry import KINDS
from thinsync.model.validate import SINGLETON_NAME, canonical_json

ERROR_KEYS = {"error", "message"}
OPTIONAL_ERROR_KEYS = {"details", "fields"}

# A minimal valid body for every collection kind (tests check this covers every kind).
MINIMAL: dict[str, dict[str, Any]] = {
    "terminals": {"hardware": {"mac": "02:00:00:00:00:99"}},
    "terminal-groups": {},
    "display-clients": {},
    "display-servers": {"address": "10.9.9.9"},
    "users": {},
    "access-groups": {},
    "locations": {},
    "admins": {"password": "password-123", "security_groups": ["viewers"]},
    "security-groups": {},
    "schedules": {"every_hours": 24},
}


def assert_error(response: httpx2.Response, status: int, code: str | None = None, *words: str) -> dict[str, Any]:
    """The response is `status` with our error body: `{"error", "message"}` (+ details/fields), never `{"detail"}`."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | OPTIONAL_ERROR_KEYS, body
    assert isinstance(body["error"], str) and body["error"], body
    message = body["message"]
    assert isinstance(message, str) and len(message) >= 10, body
    assert "Traceback" not in message and "pydantic" not in message.lower(), message
    if code is not None:
        assert body["error"] == code, body
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return body


@dataclass(frozen=True)
class Snapshot:
    """Everything a write could change: the change log and every kind's live objects."""

    changes: int
    last_change: int
    objects: dict[str, dict[str, tuple[str, str]]]


def snapshot(node: InProcess) -> Snapshot:
    store = node.store
    changes = store.changes_since(0, 10**9)
    objects: dict[str, dict[str, tuple[str, str]]] = {}
    for kind, spec in KINDS.items():
        if spec.singleton:
            state = store.get(kind, SINGLETON_NAME)
            rows: list[tuple[Any, ...]] = [(SINGLETON_NAME, state)] if state.live else []
        else:
            rows = list(store.list_live(kind, "", 10**9))
        # list_live rows start with (name, state); anything after (problems, ...) is compared too.
        objects[kind] = {row[0]: (row[1].version, canonical_json([dict(row[1].vals), *row[2:]])) for row in rows}
    return Snapshot(len(changes), changes[-1].id if changes else 0, objects)


@contextmanager
def nothing_written(node: InProcess) -> Iterator[Snapshot]:
    """Assert that the requests made inside the block left the change log and every object as they were."""
    before = snapshot(node)
    yield before
    after = snapshot(node)
    assert after.changes == before.changes, "a rejected request added to the change log"
    assert after == before, "a rejected request changed stored objects"


async def seed(node: InProcess) -> None:
    """ds1 <- dc1 <- T1 (via screens), plus a terminal group; the references the tests lean on."""
    for method, path, body in [
        ("PUT", "/api/v1/display-servers/ds1", {"address": "10.0.0.1"}),
        ("PUT", "/api/v1/display-clients/dc1", {"display_servers": ["ds1"]}),
        ("PUT", "/api/v1/terminal-groups/g1", {"description": "floor 1"}),
        (
            "PUT",
            "/api/v1/terminals/T1",
            {"hardware": {"mac": "aa:bb:cc:dd:ee:01"}, "screens": [{"display_clients": ["dc1"]}], "group": "g1"},
        ),
        ("PUT", "/api/v1/terminals/T2", {"hardware": {"mac": "aa:bb:cc:dd:ee:02"}}),
        ("PUT", "/api/v1/users/u1", {"card_id": "card-1"}),
    ]:
        response = await node.call(method, path, json=body)
        assert response.status_code == 201, response.text
