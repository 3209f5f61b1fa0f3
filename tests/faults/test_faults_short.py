"""Short fault schedules against two real servers behind fault proxies: kill -9 under write load,
partitions, one-way loss, a flapping link, a blackhole, latency, skewed clocks and a rolled-back data dir.

Every test ends with the same checks: every acknowledged write is on both servers (distinct names, so
nothing supersedes them), the public objects are identical and the digests equal."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import pytest

from tests.helpers.cluster import pair, status, wait_until
from tests.helpers.process import ServerFactory, ServerProcess
from tests.helpers.syncing import (
    converge,
    finish,
    loads_on_both,
    peer_of,
    proxied_pair,
    relogin,
    start_servers,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


@pytest.mark.parametrize("victim", ["tm-a", "tm-b"])
def test_kill_9_under_write_load_loses_no_acknowledged_write(servers: ServerFactory, victim: str) -> None:
    rng = random.Random(f"kill-{victim}")
    with proxied_pair(servers) as net:
        server = net.a if victim == "tm-a" else net.b
        loads = loads_on_both(net, 150)
        for _ in range(2):
            time.sleep(rng.uniform(0.2, 1.2))
            server.kill()
            time.sleep(rng.uniform(0.1, 0.8))
            server.start()
        acked_before = sum(len(load.acked) for load in loads)
        finish(net, *loads)
        assert acked_before > 0 and all(load.acked for load in loads)


@pytest.mark.parametrize("seconds", [1.0, 5.0])
def test_symmetric_partition_with_writes_on_both_sides(servers: ServerFactory, seconds: float) -> None:
    with proxied_pair(servers) as net:
        a, b = net.a, net.b
        assert a.api("PUT", "/api/v1/display-servers/both", json={"address": "10.0.0.1"}).status_code == 201
        wait_until(lambda: b.api("GET", "/api/v1/display-servers/both").status_code == 200, 10)
        loads = loads_on_both(net, 60, pause_s=seconds / 60)
        net.partition()
        assert a.api("PATCH", "/api/v1/display-servers/both", json={"address": "10.0.0.2"}).status_code == 200
        assert b.api("PATCH", "/api/v1/display-servers/both", json={"port": 3390}).status_code == 200
        time.sleep(seconds)
        finish(net, *loads)
        merged = a.api("GET", "/api/v1/display-servers/both").json()
        assert (merged["address"], merged["port"]) == ("10.0.0.2", 3390), "different fields both survive"


def test_one_way_loss_then_heal(servers: ServerFactory) -> None:
    with proxied_pair(servers) as net:
        # B's answers to A are lost: A's changes reach B but A never sees the acks.
        net.pb.drop_to_client = True
        loads = loads_on_both(net, 60)
        wait_until(lambda: not peer_of(net.a, "tm-b")["connected"], 10, what="A notices the silent link")
        wait_until(lambda: len(loads[0].acked) >= 10, 10, what="writes on A during the loss")
        finish(net, *loads)


def test_flapping_link_under_writes(servers: ServerFactory) -> None:
    with proxied_pair(servers) as net:
        loads = loads_on_both(net, 100)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            net.pa.cut()
            net.pb.cut()
            time.sleep(0.3)
        finish(net, *loads)


def test_blackhole_shows_unreachable_then_heals(servers: ServerFactory) -> None:
    with proxied_pair(servers) as net:
        net.pa.blackhole()
        net.pb.blackhole()
        started = time.monotonic()
        loads = loads_on_both(net, 40, pause_s=0.05)
        for server, other in ((net.a, "tm-b"), (net.b, "tm-a")):
            wait_until(
                lambda s=server, o=other: peer_of(s, o)["state"] == "peer-unreachable",
                8,
                0.1,
                what=f"{other} unreachable from {server.name}",
            )
        assert status(net.a)["in_sync"] is False
        time.sleep(max(0.0, 4.0 - (time.monotonic() - started)))
        finish(net, *loads)


def test_added_latency_still_converges(servers: ServerFactory) -> None:
    with proxied_pair(servers) as net:
        net.pa.delay_s = net.pb.delay_s = 0.05
        loads = loads_on_both(net, 40)
        for load in loads:
            load.join()
        converge(net.a, net.b)  # still delayed
        finish(net, *loads)


def skewed_pair(servers: ServerFactory, offset_s: int) -> tuple[ServerProcess, ServerProcess]:
    a, b = start_servers(servers, "tm-a", "tm-b", env={"tm-b": {"THINSYNC_CLOCK_OFFSET_S": str(offset_s)}})
    pair(a, b)
    relogin(b)
    return a, b


def put_ds(server: ServerProcess, name: str, address: str) -> str:
    response = server.api("PUT", f"/api/v1/display-servers/{name}", json={"address": address})
    assert response.status_code == 201, response.text
    return str(response.json()["version"])


def has(server: ServerProcess, name: str) -> bool:
    return server.api("GET", f"/api/v1/display-servers/{name}").status_code == 200


def refused_for_clock(receiver: ServerProcess, sender: ServerProcess, name: str) -> None:
    """`sender`'s link to `receiver` is degraded for the clock, and `receiver` did not apply `name`."""

    def degraded() -> dict[str, object] | None:
        peer = peer_of(sender, receiver.name)
        return peer if peer["state"] == "degraded" else None

    peer = wait_until(degraded, 15, what=f"{sender.name}'s link to {receiver.name} degraded")
    assert "clock" in f"{peer['detail']} {peer['last_error']}".lower(), peer
    assert not has(receiver, name), f"{receiver.name} applied a change stamped far ahead of its clock"
    assert status(sender)["in_sync"] is False
    events = receiver.api("GET", "/api/v1/events?category=sync").json()["items"]
    assert any("clock" in e["message"] for e in events), events


def test_a_server_ten_minutes_ahead_is_refused_and_says_why(servers: ServerFactory) -> None:
    a, b = skewed_pair(servers, 600)
    put_ds(a, "from-a", "10.0.0.1")
    # Stamps from the past are fine: A's edits reach B.
    wait_until(lambda: has(b, "from-a"), 15, what="A's edit on B")
    put_ds(b, "from-b", "10.0.0.2")
    refused_for_clock(a, b, "from-b")
    assert peer_of(a, "tm-b")["clock_offset_ms"] > 500_000
    assert peer_of(b, "tm-a")["clock_offset_ms"] < -500_000


def test_a_server_ten_minutes_behind_refuses_the_edits_stamped_ahead_of_it(servers: ServerFactory) -> None:
    """DESIGN §4 Clocks: the receiver refuses stamps more than 60 s ahead of its clock, whichever side is
    wrong: B (behind) still sends its edits to A, and refuses A's with the reason shown on A."""
    a, b = skewed_pair(servers, -600)
    assert status(b)["auto_sync"] is True and status(b)["role"] == "secondary"
    put_ds(b, "from-b", "10.0.0.2")
    wait_until(lambda: has(a, "from-b"), 15, what="B's edit on A")
    put_ds(a, "from-a", "10.0.0.1")
    refused_for_clock(b, a, "from-a")
    assert peer_of(a, "tm-b")["clock_offset_ms"] < -500_000


def test_clocks_apart_within_the_limit_replicate_both_ways_in_order(servers: ServerFactory) -> None:
    a, b = skewed_pair(servers, -30)
    put_ds(b, "from-b", "10.0.0.2")
    wait_until(lambda: has(a, "from-b"), 15, what="B's edit on A")
    made = put_ds(a, "from-a", "10.0.0.1")
    wait_until(lambda: has(b, "from-a"), 15, what="A's edit on B")
    # B's clock is 30 s behind A's stamp, yet B's later edit is stamped after it (the HLC) and wins.
    later = b.api("PATCH", "/api/v1/display-servers/from-a", json={"address": "10.0.0.9"})
    assert later.status_code == 200 and later.json()["version"] > made
    wait_until(
        lambda: a.api("GET", "/api/v1/display-servers/from-a").json()["address"] == "10.0.0.9", 15, what="B's edit wins"
    )
    converge(a, b)
    assert conflicts_open(a) == conflicts_open(b) == 0


def conflicts_open(server: ServerProcess) -> int:
    return int(status(server)["conflicts_open"])


def paired_with_a_copy_of_b(servers: ServerFactory) -> tuple[ServerProcess, ServerProcess, Path]:
    """A and B paired and identical, B stopped, and a copy of B's data dir (to roll it back to later)."""
    a, b = start_servers(servers, "tm-a", "tm-b")
    pair(a, b)
    relogin(b)
    converge(a, b)
    assert b.stop() == 0
    saved = b.data.parent / "tm-b.saved"
    shutil.copytree(b.data, saved)
    return a, b, saved


def test_a_rolled_back_data_dir_gets_its_own_later_edits_back(servers: ServerFactory) -> None:
    a, b, saved = paired_with_a_copy_of_b(servers)
    b.start()
    late = {}
    for i in range(3):
        response = b.api("PUT", f"/api/v1/display-servers/b-late-{i}", json={"address": f"10.0.1.{i + 1}"})
        assert response.status_code == 201
        late[f"b-late-{i}"] = response.json()["version"]
    wait_until(lambda: a.api("GET", "/api/v1/display-servers/b-late-2").status_code == 200, 15, what="late on A")
    assert b.stop() == 0

    shutil.rmtree(b.data)
    shutil.copytree(saved, b.data)
    b.start()
    # An edit made at once, before the peer is heard from, must not collide with the rolled-back ones.
    after = b.api("PUT", "/api/v1/display-servers/b-after", json={"address": "10.0.2.1"})
    assert after.status_code == 201
    converge(a, b)
    for server in (a, b):
        for name, version in late.items():
            assert server.api("GET", f"/api/v1/display-servers/{name}").json()["version"] == version
        assert server.api("GET", "/api/v1/display-servers/b-after").json()["version"] == after.json()["version"]
    # Both servers hold the change in their log (history), not only as a repaired object.
    history = a.api("GET", "/api/v1/history?kind=display-servers&name=b-after").json()["items"]
    assert [h["version"] for h in history] == [after.json()["version"]]


def test_a_rolled_back_data_dir_whose_clock_went_back_takes_a_new_incarnation(servers: ServerFactory) -> None:
    """With its clock set back, a rolled-back copy takes the incarnation its lost run took (the counter on
    disk is older, and the wall clock no longer lifts it). The peer's hello shows it holds more of that
    origin than the server: the server takes a new incarnation at once, and the two converge."""
    a, b, saved = paired_with_a_copy_of_b(servers)
    b.env["THINSYNC_CLOCK_OFFSET_S"] = "-40"  # behind the incarnation pairing took, within the skew limit
    b.start()
    lost_run = status(b)["node"]["incarnation"]
    for i in range(3):
        late = b.api("PUT", f"/api/v1/display-servers/b-late-{i}", json={"address": f"10.0.1.{i + 1}"})
        assert late.status_code == 201
    wait_until(lambda: has(a, "b-late-2"), 15, what="the lost run's edits on A")
    assert b.stop() == 0
    shutil.rmtree(b.data)
    shutil.copytree(saved, b.data)
    b.start()  # it takes `lost_run` again (the collision), then at once a new one when it hears from A
    wait_until(lambda: status(b)["node"]["incarnation"] > lost_run, 15, what="a new incarnation on B")
    events = b.api("GET", "/api/v1/events?category=sync&limit=100").json()["items"]
    assert any("rolled back" in e["message"] and e["level"] == "error" for e in events), events
    after = b.api("PUT", "/api/v1/display-servers/b-after", json={"address": "10.0.2.1"})
    assert after.status_code == 201
    converge(a, b)
    for server in (a, b):
        for name in ("b-late-0", "b-late-1", "b-late-2", "b-after"):
            assert has(server, name), f"{name} missing on {server.name}"


def test_a_wiped_secondary_is_refused_as_a_stranger_and_a_new_pairing_makes_it_identical(
    servers: ServerFactory,
) -> None:
    a, b = start_servers(servers, "tm-a", "tm-b")
    pair(a, b)
    relogin(b)
    for i in range(20):
        assert a.api("PUT", f"/api/v1/display-servers/ds-{i}", json={"address": f"10.0.3.{i + 1}"}).status_code == 201
    converge(a, b)
    old_node = b.node_id
    assert b.stop() == 0
    shutil.rmtree(b.data)  # the disk was replaced: a new server with the same name and address
    b.init()
    b.start()
    relogin(b)
    assert b.node_id != old_node
    assert b.api("GET", "/api/v1/display-servers").json()["items"] == []
    # tm-a keeps its configuration and does not take the stranger for its peer
    wait_until(lambda: not status(a)["in_sync"], 15, what="tm-a no longer in sync")
    assert len(a.api("GET", "/api/v1/display-servers").json()["items"]) == 20
    # the operations guide's procedure for a replaced server: turn auto-sync off, then on (pairs again)
    listed = a.api("GET", "/api/v1/server-list").json()
    off = a.api("PUT", "/api/v1/server-list", json={**listed, "auto_sync": False}, timeout=60)
    assert off.status_code == 200, off.text
    pair(a, b)
    relogin(b)
    converge(a, b)
    assert status(a)["digest"] == status(b)["digest"]
