"""Replication between real servers: both directions, the change stream, deletes, mirrored mode and promote,
conflicts and merge-created breaks after a partition, a dead peer, three servers with forwarding, an out-of-band
edit found by the digest check."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import pytest

from tests.helpers.cluster import pair, status, wait_until
from tests.helpers.process import ServerFactory, ServerProcess
from tests.helpers.syncing import (
    SSE,
    NodeFilterProxy,
    conflicts,
    converge,
    peer_of,
    proxied_pair,
    relogin,
    start_servers,
)

pytestmark = pytest.mark.process


def put(server: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = server.api("PUT", path, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def patch(server: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = server.api("PATCH", path, json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def arrives(server: ServerProcess, path: str, version: str, timeout: float = 10.0) -> dict[str, Any]:
    """Wait until `path` on `server` holds exactly `version`; returns the object."""

    def check() -> dict[str, Any] | None:
        response = server.api("GET", path)
        return response.json() if response.status_code == 200 and response.json()["version"] == version else None

    return wait_until(check, timeout, what=f"{path} at {version} on {server.name}")  # type: ignore[no-any-return]


def gone(server: ServerProcess, path: str, timeout: float = 10.0) -> None:
    wait_until(lambda: server.api("GET", path).status_code == 404, timeout, what=f"{path} deleted on {server.name}")


def test_edits_and_deletes_replicate_both_ways_and_show_on_the_change_stream(servers: ServerFactory) -> None:
    a, b = start_servers(servers, "tm-a", "tm-b")
    pair(a, b)
    relogin(b)
    converge(a, b)
    stream = SSE(b, seconds=40)
    try:
        made = put(a, "/api/v1/display-servers/ds-a", {"address": "10.0.0.1", "port": 3389})
        on_b = arrives(b, "/api/v1/display-servers/ds-a", made["version"])
        assert on_b == made
        events = wait_until(lambda: stream.touched("display-servers", "ds-a"), 10, what="ds-a on B's stream")
        event = events[0]
        assert event["origin"].startswith(a.node_id + ".") and event["seq"] >= 1 and event["hlc"] > 0
        assert {"kind": "display-servers", "name": "ds-a", "version": made["version"]}.items() <= next(
            i for i in event["items"] if i["name"] == "ds-a"
        ).items()

        from_b = put(b, "/api/v1/display-servers/ds-b", {"address": "10.0.0.2"})
        assert arrives(a, "/api/v1/display-servers/ds-b", from_b["version"]) == from_b
        changed = patch(b, "/api/v1/display-servers/ds-a", {"address": "10.0.0.11"})
        assert arrives(a, "/api/v1/display-servers/ds-a", changed["version"])["address"] == "10.0.0.11"
        own = wait_until(lambda: len(stream.touched("display-servers", "ds-a")) >= 2, 10, what="B's own edit")
        assert own

        assert a.api("DELETE", "/api/v1/display-servers/ds-b").status_code == 204
        gone(b, "/api/v1/display-servers/ds-b")
        assert b.api("DELETE", "/api/v1/display-servers/ds-a").status_code == 204
        gone(a, "/api/v1/display-servers/ds-a")
        deletes = wait_until(
            lambda: [e for e in stream.touched("display-servers", "ds-b") if any(i.get("deleted") for i in e["items"])],
            10,
            what="the delete on B's stream",
        )
        assert deletes[0]["origin"].startswith(a.node_id + ".")
    finally:
        stream.close()
    converge(a, b)
    assert status(a)["digest"] == status(b)["digest"]


def test_mirrored_secondary_refuses_edits_and_promote_moves_the_primary(servers: ServerFactory) -> None:
    a, b = start_servers(servers, "tm-a", "tm-b")
    pair(a, b, mode="mirrored")
    relogin(b)
    converge(a, b)
    refused = b.api("PUT", "/api/v1/display-servers/ds-b", json={"address": "10.0.0.2"})
    assert refused.status_code == 409, refused.text
    assert "tm-a" in refused.json()["message"] and "primary" in refused.json()["message"]
    made = put(a, "/api/v1/display-servers/ds-a", {"address": "10.0.0.1"})
    arrives(b, "/api/v1/display-servers/ds-a", made["version"])
    assert a.api("POST", "/api/v1/sync/promote").status_code == 409  # only the secondary can be promoted

    assert a.stop() == 0
    promoted = b.api("POST", "/api/v1/sync/promote")
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["primary"]["name"] == "tm-b" and promoted.json()["secondary"]["name"] == "tm-a"
    assert status(b)["role"] == "primary"
    during = put(b, "/api/v1/display-servers/ds-b", {"address": "10.0.0.2"})

    a.start()
    wait_until(lambda: status(a)["role"] == "secondary", 20, what="tm-a adopts the secondary role")
    arrives(a, "/api/v1/display-servers/ds-b", during["version"], timeout=20)
    refused = a.api("PUT", "/api/v1/display-servers/ds-x", json={"address": "10.0.0.9"})
    assert refused.status_code == 409 and "tm-b" in refused.json()["message"], refused.text
    converge(a, b)
    assert status(a)["mode"] == status(b)["mode"] == "mirrored"


def test_concurrent_edits_during_a_partition_record_the_same_conflict_on_both(servers: ServerFactory) -> None:
    with proxied_pair(servers) as net:
        a, b = net.a, net.b
        made = put(a, "/api/v1/display-servers/shared", {"address": "10.0.0.1", "description": "original"})
        arrives(b, "/api/v1/display-servers/shared", made["version"])
        net.partition()
        patch(a, "/api/v1/display-servers/shared", {"address": "10.0.0.2"})
        patch(b, "/api/v1/display-servers/shared", {"address": "10.0.0.3"})
        net.heal()
        converge(a, b)

        on_a = a.api("GET", "/api/v1/display-servers/shared").json()
        assert on_a == b.api("GET", "/api/v1/display-servers/shared").json()
        found = {s.name: conflicts(s) for s in (a, b)}
        assert len(found["tm-a"]) == 1 and found["tm-a"] == found["tm-b"], found
        conflict = found["tm-a"][0]
        assert (conflict["kind"], conflict["name"], conflict["field"]) == ("display-servers", "shared", "address")
        assert conflict["state"] == "open" and conflict["winner"] == on_a["address"]
        values = {v["value"] for v in conflict["values"]}
        assert values == {"10.0.0.2", "10.0.0.3"}
        assert {v["server"] for v in conflict["values"]} == {"tm-a", "tm-b"}
        assert status(a)["conflicts_open"] == status(b)["conflicts_open"] == 1

        other = (values - {conflict["winner"]}).pop()
        resolved = b.api("POST", f"/api/v1/sync/conflicts/{conflict['id']}/resolve", json={"keep": "other"})
        assert resolved.status_code == 200, resolved.text
        for server in (a, b):
            wait_until(
                lambda s=server: s.api("GET", "/api/v1/display-servers/shared").json()["address"] == other,
                10,
                what=f"the kept value on {server.name}",
            )
            wait_until(lambda s=server: conflicts(s) == [], 10, what=f"conflict closed on {server.name}")
        converge(a, b)
        closed = a.api("GET", "/api/v1/sync/conflicts?all=true").json()["items"]
        assert [(c["id"], c["state"]) for c in closed] == [(conflict["id"], "resolved")]
        assert a.api("GET", "/api/v1/display-servers/shared").json()["description"] == "original"


def test_a_break_only_a_merge_can_create_is_marked_on_both(servers: ServerFactory) -> None:
    with proxied_pair(servers) as net:
        a, b = net.a, net.b
        made = put(a, "/api/v1/display-clients/dc1", {"type": "rds"})
        arrives(b, "/api/v1/display-clients/dc1", made["version"])
        net.partition()
        assert a.api("DELETE", "/api/v1/display-clients/dc1").status_code == 204
        put(
            b,
            "/api/v1/terminals/T1",
            {"hardware": {"mac": "02:00:00:00:00:01"}, "screens": [{"display_clients": ["dc1"]}]},
        )
        net.heal()
        converge(a, b)

        for server in (a, b):
            terminal = server.api("GET", "/api/v1/terminals/T1").json()
            assert any("dc1" in problem for problem in terminal.get("problems", [])), terminal
        found = {s.name: conflicts(s) for s in (a, b)}
        assert found["tm-a"] == found["tm-b"], found
        validity = [c for c in found["tm-a"] if c["field"] == "validity"]
        assert len(validity) == 1 and (validity[0]["kind"], validity[0]["name"]) == ("terminals", "T1"), found
        assert "dc1" in validity[0]["values"][0]["value"]
        refused = a.api("POST", f"/api/v1/sync/conflicts/{validity[0]['id']}/resolve", json={"keep": "winner"})
        assert refused.status_code == 409, refused.text

        # Fixing the object closes the record on both.
        put(a, "/api/v1/terminals/T1", {"hardware": {"mac": "02:00:00:00:00:01"}})
        for server in (a, b):
            wait_until(lambda s=server: conflicts(s) == [], 10, what=f"validity conflict fixed on {server.name}")
            assert "problems" not in server.api("GET", "/api/v1/terminals/T1").json()
        converge(a, b)


def test_a_killed_peer_shows_unreachable_within_seconds(servers: ServerFactory) -> None:
    a, b = start_servers(servers, "tm-a", "tm-b")
    pair(a, b)
    relogin(b)
    converge(a, b)
    b.kill()
    killed = time.monotonic()

    def unreachable() -> bool:
        peer = peer_of(a, "tm-b")
        return peer["state"] == "peer-unreachable" and peer["connected"] is False

    wait_until(unreachable, 3.5, 0.1, what="tm-b unreachable on tm-a")
    assert time.monotonic() - killed < 3.5
    shown = status(a)
    assert shown["in_sync"] is False and peer_of(a, "tm-b")["last_error"]
    made = put(a, "/api/v1/display-servers/while-down", {"address": "10.0.0.7"})
    wait_until(lambda: peer_of(a, "tm-b")["lag_changes"] >= 1, 5, what="the change queued for tm-b")
    b.start()
    arrives(b, "/api/v1/display-servers/while-down", made["version"], timeout=20)
    converge(a, b)


def test_three_servers_replicate_and_forward_around_a_cut_link(servers: ServerFactory) -> None:
    a, b, c = start_servers(servers, "tm-a", "tm-b", "tm-c")
    proxies = {s.name: NodeFilterProxy(s.port) for s in (a, b, c)}
    try:
        pair(a, b, extra=[c], ports={name: proxy.port for name, proxy in proxies.items()})
        relogin(b, c)
        converge(a, b, c)
        for server in (a, b, c):
            made = put(server, f"/api/v1/locations/from-{server.name}", {"description": server.name})
            for other in (a, b, c):
                arrives(other, f"/api/v1/locations/from-{server.name}", made["version"])
        assert status(c)["role"] == "member" and len(status(c)["peers"]) == 2

        # Cut A <-> C only: C still hears of A's edits through B, and A of C's.
        proxies["tm-c"].refuse(a.node_id)
        proxies["tm-a"].refuse(c.node_id)
        wait_until(lambda: not peer_of(a, "tm-c")["connected"], 10, what="A's link to C down")
        wait_until(lambda: not peer_of(c, "tm-a")["connected"], 10, what="C's link to A down")
        from_a = put(a, "/api/v1/locations/relayed-a", {"description": "through B"})
        arrives(c, "/api/v1/locations/relayed-a", from_a["version"], timeout=15)
        from_c = put(c, "/api/v1/locations/relayed-c", {"description": "through B"})
        arrives(a, "/api/v1/locations/relayed-c", from_c["version"], timeout=15)
        assert not peer_of(a, "tm-c")["connected"], "the A-C link must still be cut"

        proxies["tm-c"].refuse()
        proxies["tm-a"].refuse()
        converge(a, b, c)
    finally:
        for proxy in proxies.values():
            proxy.close()


def plant_edit(server: ServerProcess, kind: str, name: str, field: str, value: Any) -> None:
    """Change one value in the server's SQLite file behind its back: the stamps stay as they were."""
    conn = sqlite3.connect(server.data / "thinsync.db", timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        (vals,) = conn.execute("SELECT vals FROM objects WHERE kind=? AND name=?", (kind, name)).fetchone()
        changed = {**json.loads(vals), field: value}
        conn.execute(
            "UPDATE objects SET vals=? WHERE kind=? AND name=?",
            (json.dumps(changed, separators=(",", ":"), sort_keys=True), kind, name),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def out_of_band_alarms(server: ServerProcess) -> list[dict[str, Any]]:
    items = server.api("GET", "/api/v1/events", params={"category": "sync", "limit": 1000}).json()["items"]
    return [e for e in items if e["level"] == "error" and "out-of-band edit" in e["message"]]


def test_an_out_of_band_edit_is_found_by_the_digest_check_settled_the_same_on_both_and_raises_an_alarm(
    servers: ServerFactory,
) -> None:
    often = {"THINSYNC_DIGEST_INTERVAL_S": "2"}
    a, b = start_servers(servers, "tm-a", "tm-b", env={"tm-a": often, "tm-b": often})
    pair(a, b)
    relogin(b)
    made = put(a, "/api/v1/display-servers/ds-1", {"address": "10.0.0.1"})
    arrives(b, "/api/v1/display-servers/ds-1", made["version"])
    converge(a, b)
    plant_edit(b, "display-servers", "ds-1", "address", "192.0.2.1")
    assert status(a)["digest"] != status(b)["digest"]
    # found by the periodic digest comparison, the differing bucket exchanged and merged on both sides
    wait_until(lambda: out_of_band_alarms(a) and out_of_band_alarms(b), 30, 0.25, what="the alarm on both servers")
    converge(a, b)
    on_a = a.api("GET", "/api/v1/display-servers/ds-1").json()
    on_b = b.api("GET", "/api/v1/display-servers/ds-1").json()
    assert on_a == on_b and on_a["address"] in ("10.0.0.1", "192.0.2.1")
    assert "ds-1" in out_of_band_alarms(a)[0]["message"]
