"""Pairing two real servers: credentials or a pairing code, refusals that change nothing, the secondary's
automatic backup, peer authentication, turning auto-sync off, the status document and discover."""

from __future__ import annotations

import secrets
from typing import Any

import httpx2
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.helpers.cluster import entry, objects, pair, status, wait_until
from tests.helpers.process import ADMIN_PASSWORD, ServerFactory, ServerProcess
from tests.helpers.syncing import converge, free_port, node_value, relogin, start_servers
from thinsync.sync import protocol as p

pytestmark = pytest.mark.process


def server_list(a: ServerProcess, b: ServerProcess, peer_auth: dict[str, Any], **b_entry: Any) -> dict[str, Any]:
    return {
        "auto_sync": True,
        "mode": "redundant",
        "primary": entry(a),
        "secondary": {**entry(b), **b_entry},
        "peer_auth": peer_auth,
    }


def put(server: ServerProcess, path: str, body: dict[str, Any]) -> None:
    response = server.api("PUT", path, json=body)
    assert response.status_code in (200, 201), response.text


def backups(server: ServerProcess) -> list[dict[str, Any]]:
    response = server.api("GET", "/api/v1/backups")
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def assert_plain_error(response: httpx2.Response, *words: str) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text}"
    body = response.json()
    assert set(body) >= {"error", "message"} and "detail" not in body, body
    message = body["message"]
    assert isinstance(message, str) and len(message) > 10 and "Traceback" not in message, body
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return body  # type: ignore[no-any-return]


def test_pairing_with_admin_credentials_replaces_the_secondarys_configuration(servers: ServerFactory) -> None:
    a, b = start_servers(servers, "tm-a", "tm-b")
    put(a, "/api/v1/display-servers/from-a", {"address": "10.0.0.1"})
    put(b, "/api/v1/display-servers/old-b", {"address": "10.0.0.2"})
    put(b, "/api/v1/terminals/OLDB", {"hardware": {"mac": "02:00:00:00:0b:01"}})
    assert backups(b) == []

    listed = pair(a, b)
    assert listed["auto_sync"] is True and listed["secondary"]["name"] == "tm-b"
    relogin(b)
    converge(a, b)

    # The secondary now holds the primary's configuration; its old objects are gone and never reached A.
    assert b.api("GET", "/api/v1/display-servers/from-a").json()["address"] == "10.0.0.1"
    for server in (a, b):
        assert server.api("GET", "/api/v1/display-servers/old-b").status_code == 404
        assert server.api("GET", "/api/v1/terminals/OLDB").status_code == 404
    history = a.api("GET", "/api/v1/history?kind=terminals&name=OLDB")
    assert history.status_code == 404 or history.json()["items"] == [], history.text
    # ... and it was backed up automatically first (with the old objects in the manifest's counts).
    made = backups(b)
    assert len(made) == 1, made
    assert "tm-a" in made[0]["reason"] and made[0]["counts"].get("terminals") == 1, made[0]
    assert backups(a) == []
    sa, sb = status(a), status(b)
    assert (sa["role"], sb["role"]) == ("primary", "secondary")
    assert sa["auto_sync"] and sb["auto_sync"] and sa["digest"] == sb["digest"]


def test_pairing_with_a_one_time_code(servers: ServerFactory) -> None:
    a, b = start_servers(servers, "tm-a", "tm-b")
    shown = b.api("POST", "/api/v1/pairing-code")
    assert shown.status_code == 200, shown.text
    code = shown.json()["pairing_code"]
    response = a.api("PUT", "/api/v1/server-list", json=server_list(a, b, {"pairing_code": code}), timeout=60)
    assert response.status_code == 200, response.text
    relogin(b)
    converge(a, b)
    put(a, "/api/v1/locations/hall-1", {})
    wait_until(lambda: b.api("GET", "/api/v1/locations/hall-1").status_code == 200, 10, what="hall-1 on tm-b")


def assert_nothing_changed(a: ServerProcess, b: ServerProcess, before: dict[str, Any]) -> None:
    assert {s.name: objects(s) for s in (a, b)} == before
    for server in (a, b):
        shown = status(server)
        assert shown["auto_sync"] is False and shown["peers"] == [] and shown["role"] == "standalone"
        assert node_value(server, "cluster_key") is None
    assert backups(b) == []


def test_refused_pairing_changes_nothing_on_either_side(servers: ServerFactory) -> None:
    a, b = start_servers(servers, "tm-a", "tm-b")
    put(a, "/api/v1/display-servers/from-a", {"address": "10.0.0.1"})
    put(b, "/api/v1/display-servers/old-b", {"address": "10.0.0.2"})
    before = {s.name: objects(s) for s in (a, b)}

    wrong_password = {"username": "admin", "password": "not-the-password"}
    response = a.api("PUT", "/api/v1/server-list", json=server_list(a, b, wrong_password), timeout=60)
    assert_plain_error(response, "tm-b")
    assert_nothing_changed(a, b, before)

    response = a.api("PUT", "/api/v1/server-list", json=server_list(a, b, {"pairing_code": "ABCD-EFGH"}), timeout=60)
    assert_plain_error(response, "tm-b")
    assert_nothing_changed(a, b, before)

    # A good code is no help when the other server cannot be reached.
    code = b.api("POST", "/api/v1/pairing-code").json()["pairing_code"]
    nowhere = server_list(a, b, {"pairing_code": code}, port=free_port())
    response = a.api("PUT", "/api/v1/server-list", json=nowhere, timeout=60)
    assert_plain_error(response, "reach")
    assert_nothing_changed(a, b, before)

    response = a.api("PUT", "/api/v1/server-list", json=server_list(a, b, {}), timeout=60)
    assert_plain_error(response, "peer_auth")
    assert_nothing_changed(a, b, before)

    # After all that, the right password still pairs.
    pair(a, b)
    relogin(b)
    converge(a, b)


def test_peer_routes_need_the_cluster_key(servers: ServerFactory) -> None:
    a, b = start_servers(servers, "tm-a", "tm-b")
    unpaired = httpx2.get(f"{b.url}/peer/v1/hello", timeout=10)
    assert unpaired.status_code == 401 and set(unpaired.json()) >= {"error", "message"}
    pair(a, b)
    relogin(b)
    converge(a, b)

    assert_plain_error(httpx2.get(f"{b.url}/peer/v1/hello", timeout=10), "cluster key")
    cluster_id, key = node_value(b, "cluster_id"), node_value(b, "cluster_key")
    assert cluster_id and key and node_value(a, "cluster_key") == key

    def signed(with_key: str, cluster: str, path: str = "/peer/v1/hello") -> dict[str, str]:
        return p.sign_request(with_key, cluster, a.node_id, "GET", path, b"")

    wrong_key = secrets.token_hex(32)
    forged = httpx2.get(f"{b.url}/peer/v1/hello", headers=signed(wrong_key, cluster_id), timeout=10)
    assert_plain_error(forged, "signature")
    other_cluster = httpx2.get(f"{b.url}/peer/v1/hello", headers=signed(key, "0123456789abcdef"), timeout=10)
    assert_plain_error(other_cluster, "cluster")
    snapshot = httpx2.get(f"{b.url}/peer/v1/snapshot", headers=signed(wrong_key, cluster_id), timeout=10)
    assert snapshot.status_code == 401
    # The replication link refuses a connection signed with a wrong key.
    with pytest.raises(InvalidStatus):
        connect(
            f"ws://127.0.0.1:{b.port}/peer/v1/link",
            additional_headers=signed(wrong_key, cluster_id, "/peer/v1/link"),
            open_timeout=10,
        ).close()
    # A request signed with the right key is answered, and a replay of it is refused.
    headers = signed(key, cluster_id)
    good = httpx2.get(f"{b.url}/peer/v1/hello", headers=headers, timeout=10)
    assert good.status_code == 200 and good.json()["node_id"] == b.node_id
    assert_plain_error(httpx2.get(f"{b.url}/peer/v1/hello", headers=headers, timeout=10), "replayed")
    # Refusals are logged in the sync event category.
    events = b.api("GET", "/api/v1/events?category=sync").json()["items"]
    assert any("refused a peer request" in e["message"] for e in events), events


@pytest.mark.parametrize("off_on", ["tm-a", "tm-b"])
def test_turning_auto_sync_off_tells_the_other_and_both_keep_their_configuration(
    servers: ServerFactory, off_on: str
) -> None:
    a, b = start_servers(servers, "tm-a", "tm-b")
    pair(a, b)
    relogin(b)
    put(a, "/api/v1/display-servers/ds-a", {"address": "10.0.0.1"})
    put(b, "/api/v1/display-servers/ds-b", {"address": "10.0.0.2"})
    converge(a, b)
    kept = objects(a)["display-servers"]
    assert set(kept) == {"ds-a", "ds-b"}

    here = a if off_on == "tm-a" else b
    body = {**here.api("GET", "/api/v1/server-list").json(), "auto_sync": False}
    body.pop("version")
    response = here.api("PUT", "/api/v1/server-list", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["auto_sync"] is False

    for server in (a, b):
        wait_until(lambda s=server: status(s)["auto_sync"] is False, 10, what=f"auto_sync off on {server.name}")
        shown = status(server)
        assert shown["in_sync"] is False and shown["role"] == "standalone"
        wait_until(lambda s=server: status(s)["peers"] == [], 10, what=f"{server.name} drops its links")
        assert server.api("GET", "/api/v1/server-list").json()["auto_sync"] is False
        assert objects(server)["display-servers"].keys() == kept.keys()
        # Each is standalone again: edits are accepted on both.
        put(server, f"/api/v1/locations/after-{server.name}", {})


def test_sync_status_document(servers: ServerFactory) -> None:
    a, b = start_servers(servers, "tm-a", "tm-b")
    alone = status(a)
    assert alone["auto_sync"] is False and alone["in_sync"] is False and alone["peers"] == []
    pair(a, b)
    relogin(b)
    put(a, "/api/v1/display-servers/ds1", {"address": "10.0.0.1"})
    converge(a, b)

    def compared_on_current_state() -> bool:
        docs = [status(s) for s in (a, b)]
        return docs[0]["digest"] == docs[1]["digest"] and all(
            d["in_sync"] and d["peers"][0]["digest"] == d["digest"] for d in docs
        )

    # Digests are compared again within about a second of the last change (link.QUIET_S).
    wait_until(compared_on_current_state, 10, 0.2, what="digests compared on the current state")
    top = {"auto_sync", "mode", "role", "in_sync", "digest", "node", "peers", "conflicts_open"}
    per_peer = {
        "name",
        "address",
        "port",
        "role",
        "state",
        "connected",
        "lag_changes",
        "lag_seconds",
        "last_sync",
        "digest",
        "versions",
        "clock_offset_ms",
        "last_error",
    }
    shown = {s.name: status(s) for s in (a, b)}
    for me, other, role, other_role in ((a, b, "primary", "secondary"), (b, a, "secondary", "primary")):
        doc = shown[me.name]
        assert top <= set(doc), top - set(doc)
        assert doc["auto_sync"] is True and doc["mode"] == "redundant" and doc["role"] == role
        assert doc["in_sync"] is True and doc["conflicts_open"] == 0
        assert doc["node"]["name"] == me.name and doc["node"]["node_id"] == me.node_id
        assert len(doc["peers"]) == 1, "peers lists the other servers only"
        peer = doc["peers"][0]
        assert per_peer <= set(peer), per_peer - set(peer)
        assert (peer["name"], peer["address"], peer["port"], peer["role"]) == (
            other.name,
            "127.0.0.1",
            other.port,
            other_role,
        )
        assert peer["state"] == "in-sync" and peer["connected"] is True
        assert peer["lag_changes"] == 0 and peer["lag_seconds"] == 0
        assert peer["digest"] == doc["digest"] == shown[other.name]["digest"]
        assert isinstance(peer["last_sync"], str | None) and isinstance(peer["clock_offset_ms"], int | float)
        assert abs(peer["clock_offset_ms"]) < 5000
        assert {"protocol", "schema"} <= set(peer["versions"]) and peer["versions"]["protocol"] == p.PROTOCOL_VERSION
    assert shown["tm-a"]["peers"][0]["last_sync"] is not None  # A pushed ds1 to B and got the ack


def test_discover_finds_a_server_by_name(servers: ServerFactory) -> None:
    a, b = start_servers(servers, "tm-a", "tm-b")
    found = a.api("POST", "/api/v1/discover", json={"name": "127.0.0.1", "port": b.port})
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["name"] == "127.0.0.1" and body["address"] == "127.0.0.1" and body["port"] == b.port
    assert body["thinsync"]["node_id"] == b.node_id

    local = a.api("POST", "/api/v1/discover", json={"name": "localhost", "port": b.port}).json()
    assert local["thinsync"] and local["thinsync"]["node_id"] == b.node_id

    silent = a.api("POST", "/api/v1/discover", json={"name": "127.0.0.1", "port": free_port()})
    assert silent.status_code == 200 and silent.json()["thinsync"] is None

    missing = a.api("POST", "/api/v1/discover", json={"name": "no-such-server.invalid"})
    assert missing.status_code == 404
    assert_plain_error(missing, "no-such-server.invalid")


def test_login_still_works_on_the_secondary_after_pairing(servers: ServerFactory) -> None:
    """The secondary takes the primary's admin accounts: the same password logs in, old tokens are void."""
    a, b = start_servers(servers, "tm-a", "tm-b")
    old = b.token()
    pair(a, b)
    converge_token = httpx2.post(
        f"{b.url}/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=10
    )
    assert converge_token.status_code == 200
    token = converge_token.json()["token"]
    reply = httpx2.get(f"{b.url}/api/v1/sync/status", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert reply.status_code == 200, reply.text
    stale = httpx2.get(f"{b.url}/api/v1/sync/status", headers={"Authorization": f"Bearer {old}"}, timeout=10)
    assert stale.status_code == 401
