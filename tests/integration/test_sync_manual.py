"""Manual synchronization between real servers that do not synchronize automatically: the dry run shows
the difference and changes nothing, the copy backs up the receiving server first and makes its
configuration equal to the source's; it is refused while auto-sync is on and with wrong credentials."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.api import assert_error
from tests.helpers.cluster import entry, pair
from tests.helpers.process import ADMIN_PASSWORD, ServerFactory, ServerProcess
from tests.helpers.syncing import public_state, relogin, start_servers

pytestmark = pytest.mark.process


def put(server: ServerProcess, path: str, body: dict[str, Any]) -> None:
    response = server.api("PUT", path, json=body)
    assert response.status_code in (200, 201), response.text


def server_list(a: ServerProcess, b: ServerProcess, auto_sync: bool = False) -> dict[str, Any]:
    return {"auto_sync": auto_sync, "mode": "redundant", "primary": entry(a), "secondary": entry(b), "servers": []}


def manual(b: ServerProcess, a: ServerProcess, dry_run: bool, password: str = ADMIN_PASSWORD) -> Any:
    body = {"from": a.name, "to": b.name, "dry_run": dry_run, "peer_auth": {"username": "admin", "password": password}}
    return b.api("POST", "/api/v1/sync/manual", json=body, timeout=60)


def test_manual_sync_dry_run_then_copy_with_a_backup_first(servers: ServerFactory) -> None:
    a, b = start_servers(servers, "tm-a", "tm-b")
    put(a, "/api/v1/display-servers/ds-1", {"address": "10.0.0.1"})
    put(a, "/api/v1/display-servers/ds-2", {"address": "10.0.0.2"})
    put(b, "/api/v1/display-servers/ds-2", {"address": "10.9.9.9"})
    put(b, "/api/v1/display-servers/only-on-b", {"address": "10.0.0.3"})
    put(b, "/api/v1/server-list", server_list(a, b))
    before = public_state(b)[1]
    backups_before = len(b.api("GET", "/api/v1/backups").json()["items"])

    dry = manual(b, a, dry_run=True)
    assert dry.status_code == 200, dry.text
    diff = dry.json()["diff"]
    assert diff["added"]["display-servers"] == ["ds-1"]
    assert diff["changed"]["display-servers"] == ["ds-2"]
    assert diff["removed"]["display-servers"] == ["only-on-b"]
    assert public_state(b)[1] == before, "a dry run changes nothing"

    done = manual(b, a, dry_run=False)
    assert done.status_code == 200, done.text
    assert done.json()["dry_run"] is False
    names = {o["name"]: o["address"] for o in b.api("GET", "/api/v1/display-servers").json()["items"]}
    assert names == {"ds-1": "10.0.0.1", "ds-2": "10.0.0.2"}
    backups = b.api("GET", "/api/v1/backups").json()["items"]
    assert len(backups) == backups_before + 1
    # the server list is left as it was: the copy does not pair the servers
    assert b.api("GET", "/api/v1/server-list").json()["auto_sync"] is False


def test_manual_sync_is_refused_with_auto_sync_on_or_wrong_credentials_and_changes_nothing(
    servers: ServerFactory,
) -> None:
    a, b = start_servers(servers, "tm-a", "tm-b")
    put(a, "/api/v1/display-servers/ds-1", {"address": "10.0.0.1"})
    put(b, "/api/v1/server-list", server_list(a, b))
    before = public_state(b)[1]
    assert_error(manual(b, a, dry_run=False, password="not-the-password"), 422, None, "refused the credentials")
    assert_error(manual(a, b, dry_run=False), 422, None, "not on the server list")  # tm-a does not list tm-b
    assert public_state(b)[1] == before
    pair(a, b)
    relogin(b)
    assert_error(manual(b, a, dry_run=False), 409, None, "automatic synchronization is on")
