"""The terminal service against real server processes: boot documents byte-identical over HTTP, iPXE
and TFTP (read with the real `curl tftp://`) on both servers of a pair, the monitor list, heartbeats
and status lights on both servers, change notification across servers, fallback to the other
server, the unknown-terminal policies (auto-create on both servers converging on one object), and
bad input of every kind refused plainly while other terminals are still served."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.helpers.cluster import in_sync, pair, status, wait_until
from tests.helpers.inprocess import InProcess
from tests.helpers.process import ADMIN_PASSWORD, THINSYNC, ServerFactory, ServerProcess
from tests.helpers.proxy import FaultProxy
from thinsync.terminals.simulator import Simulator, sim_mac, sim_name

pytestmark = pytest.mark.process

TFTP = ["--tftp", "127.0.0.1:0"]
MAC = "aa:bb:cc:00:00:01"
OTHER_MAC = "aa:bb:cc:00:00:02"
UNKNOWN_MAC = "aa:bb:cc:00:0f:ff"
# curl's exit codes for a TFTP error packet: "file not found", "access violation", "illegal operation".
CURL_TFTP_NOT_FOUND, CURL_TFTP_PERM, CURL_TFTP_ILLEGAL = 68, 69, 71
# The connection-monitor timings the status-light test uses: offline after 1 * (1 + 1) + 1 = 3 s.
FAST_MONITOR = {"interval_s": 1, "ping_retry": 1, "ping_timeout_s": 1}
FAST_OFFLINE_S = 3.0
# The server checks the lights once a second; what remains is scheduling on a loaded machine.
SWEEP_SLACK_S = 2.0


# ---------------------------------------------------------------------------- helpers


@dataclass
class Pair:
    a: ServerProcess
    b: ServerProcess

    @property
    def both(self) -> tuple[ServerProcess, ServerProcess]:
        return self.a, self.b


def start_pair(servers: ServerFactory, env: dict[str, str] | None = None) -> Pair:
    """tm-a (primary) and tm-b, both serving TFTP, paired with auto-sync and in sync."""
    a = servers.start("tm-a", extra_args=TFTP, env=env)
    b = servers.start("tm-b", extra_args=TFTP, env=env)
    pair(a, b)
    b._token = None  # pairing replaced B's accounts (and token secret) with A's
    wait_until(lambda: in_sync(a, b), 30, 0.1, what="the pair in sync after pairing")
    return Pair(a, b)


def synced(p: Pair) -> None:
    wait_until(lambda: in_sync(p.a, p.b), 30, 0.05, what="the pair in sync")


def tftp_port(server: ServerProcess) -> int:
    port = json.loads(server.ready_file.read_text())["tftp_port"]
    assert isinstance(port, int) and port > 0, port
    return port


def put(server: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = server.api("PUT", path, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def get(server: ServerProcess, path: str, **kwargs: Any) -> httpx2.Response:
    """A terminal's request: no admin token."""
    return httpx2.get(f"{server.url}{path}", timeout=15, **kwargs)


def config(server: ServerProcess, mac: str) -> httpx2.Response:
    return get(server, f"/terminal/v1/{mac}/config")


def heartbeat(server: ServerProcess, mac: str, body: Any = None, **kwargs: Any) -> httpx2.Response:
    return httpx2.post(f"{server.url}/terminal/v1/{mac}/status", json=body, timeout=15, **kwargs)


def lights(server: ServerProcess) -> list[dict[str, Any]]:
    response = server.api("GET", "/api/v1/terminal-status")
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def light(server: ServerProcess, mac: str) -> dict[str, Any] | None:
    return next((item for item in lights(server) if item["mac"] == mac), None)


def events(server: ServerProcess) -> list[str]:
    response = server.api("GET", "/api/v1/events", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return [e["message"] for e in response.json()["items"]]


def metric(server: ServerProcess, line_start: str) -> float:
    text = httpx2.get(f"{server.url}/metrics", timeout=15).text
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {line_start} in /metrics")


def terminals_with_mac(server: ServerProcess, mac: str) -> list[dict[str, Any]]:
    response = server.api("GET", "/api/v1/terminals")
    assert response.status_code == 200, response.text
    return [t for t in response.json()["items"] if t["hardware"]["mac"] == mac]


def assert_plain_error(response: httpx2.Response, status_code: int, code: str, *words: str) -> str:
    assert response.status_code == status_code, f"{response.status_code}: {response.text}"
    body = response.json()
    assert set(body) == {"error", "message"} and body["error"] == code, body
    message = body["message"]
    assert isinstance(message, str) and 10 < len(message) < 300 and "Traceback" not in message, body
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return message  # type: ignore[no-any-return]


def curl_tftp(port: int, path: str, *options: str) -> subprocess.CompletedProcess[bytes]:
    """The real curl reading (or, with -T, writing) tftp://127.0.0.1:PORT/PATH; bounded in time."""
    return subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", "10", *options, f"tftp://127.0.0.1:{port}/{path}"],
        capture_output=True,
        timeout=30,
        check=False,
    )


def tftp_raw(port: int, packet: bytes) -> tuple[int, int, bytes] | None:
    """Send one raw TFTP packet; the first answer as (opcode, block-or-error-code, payload), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(packet, ("127.0.0.1", port))
        try:
            data, _ = sock.recvfrom(65536)
        except TimeoutError:
            return None
    opcode, number = struct.unpack("!HH", data[:4])
    return opcode, number, data[4:]


def rrq(filename: bytes, mode: bytes = b"octet") -> bytes:
    return struct.pack("!H", 1) + filename + b"\0" + mode + b"\0"


def sha256_of_document(body: bytes) -> str:
    doc = json.loads(body)
    del doc["config_hash"]
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(canonical).hexdigest()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


async def simulate(urls: list[str], count: int, heartbeat_rounds: int = 0) -> Simulator:
    """Boot `count` virtual terminals (falling back in `urls` order), then heartbeat that many rounds."""
    sim = Simulator(urls, count, interval_s=1.0, watch=False)
    try:
        await sim.boot_all()
        for _ in range(heartbeat_rounds):
            await sim.heartbeat_round()
    finally:
        await sim.close()
    return sim


def make_plant(server: ServerProcess) -> None:
    """Display servers, a display client with its failover order, a group with timings and screens, a terminal."""
    put(server, "/api/v1/display-servers/ds-2", {"address": "10.1.0.2", "priority": 900})
    put(server, "/api/v1/display-servers/ds-1", {"address": "10.1.0.1", "priority": 1, "port": 3390})
    put(server, "/api/v1/display-servers/ds-3", {"address": "10.1.0.3"})
    put(server, "/api/v1/display-clients/hmi", {"display_servers": ["ds-2", "ds-1", "ds-3"], "type": "rds"})
    put(
        server,
        "/api/v1/terminal-groups/line-1",
        {
            "firmware": "fw-group",
            "connection_monitor": {"interval_s": 2, "ping_retry": 2, "ping_timeout_s": 2},
            "screens": [{"monitors": [{"width": 1280, "height": 1024}], "display_clients": ["hmi"]}],
            # With auto-sync on this list must be neither used nor shown.
            "monitor_list": {"specify": True, "servers": ["10.9.9.9"]},
        },
    )
    put(
        server,
        "/api/v1/terminals/LINE1-01",
        {"group": "line-1", "hardware": {"mac": MAC, "model": "TC-100"}, "description": "line 1, left"},
    )
    put(server, "/api/v1/terminals/LINE1-02", {"group": "line-1", "hardware": {"mac": OTHER_MAC}})


# ---------------------------------------------------------------------------- boot documents


def test_boot_document_is_byte_identical_over_http_ipxe_and_tftp_on_both_servers(servers: ServerFactory) -> None:
    p = start_pair(servers)
    make_plant(p.a)
    synced(p)

    bodies: dict[tuple[str, str], bytes] = {}
    for server in p.both:
        for spelling in (MAC, MAC.upper().replace(":", "-"), MAC.replace(":", ""), "aabb.cc00.0001"):
            response = config(server, spelling)
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("application/json")
            bodies[(server.name, spelling)] = response.content
            doc = json.loads(response.content)
            assert response.headers["x-thinsync-config-hash"] == doc["config_hash"]
            assert response.headers["etag"] == f'"{doc["config_hash"]}"'
    assert len(set(bodies.values())) == 1, "the servers (or MAC spellings) gave different documents"
    body = bodies[("tm-a", MAC)]
    doc = json.loads(body)
    assert sha256_of_document(body) == doc["config_hash"]

    # The effective configuration: group inheritance, display servers in failover order, timings.
    assert doc["terminal"]["name"] == "LINE1-01" and doc["terminal"]["mac"] == MAC
    assert doc["terminal"]["model"] == "TC-100" and doc["terminal"]["group"] == "line-1"
    assert doc["firmware"] == "fw-group"
    assert doc["connection_monitor"] == {"interval_s": 2, "ping_retry": 2, "ping_timeout_s": 2}
    (screen,) = doc["screens"]
    assert screen["monitors"][0]["width"] == 1280
    (client,) = screen["display_clients"]
    assert [s["name"] for s in client["display_servers"]] == ["ds-2", "ds-1", "ds-3"]
    assert client["display_servers"][1]["port"] == 3390
    # The monitor list: every server of the server list, with name, address and real port.
    assert doc["monitor_list"] == [
        {"name": "tm-a", "address": "127.0.0.1", "port": p.a.port},
        {"name": "tm-b", "address": "127.0.0.1", "port": p.b.port},
    ]
    assert b"10.9.9.9" not in body

    # iPXE: the same script from both servers, leading to the configuration.
    scripts = {server.name: get(server, f"/boot/{MAC}.ipxe") for server in p.both}
    for response in scripts.values():
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
    assert scripts["tm-a"].content == scripts["tm-b"].content
    script = scripts["tm-a"].text
    assert script.splitlines()[0] == "#!ipxe"
    assert f"/terminal/v1/{MAC}/config" in script and doc["config_hash"] in script
    assert str(p.a.port) not in script and str(p.b.port) not in script

    # TFTP with the real curl: the same bytes, from both servers, for the usual MAC spellings.
    for server in p.both:
        port = tftp_port(server)
        for spelling in (MAC, MAC.replace(":", ""), MAC.replace(":", "-").upper()):
            done = curl_tftp(port, f"thinsync/{spelling}.json")
            assert done.returncode == 0, done.stderr
            assert done.stdout == body, f"TFTP from {server.name} ({spelling}) differs from HTTP"

    # Another terminal of the group gets its own document (own hash), again equal on both servers.
    other = [config(server, OTHER_MAC).content for server in p.both]
    assert other[0] == other[1] and json.loads(other[0])["config_hash"] != doc["config_hash"]


def test_monitor_list_with_auto_sync_off_is_the_terminals_own_list_or_the_serving_server(
    servers: ServerFactory,
) -> None:
    a = servers.start("tm-solo")
    assert json.loads(a.ready_file.read_text())["tftp_port"] is None  # no --tftp: no TFTP
    put(
        a,
        "/api/v1/terminals/OWN-1",
        {"hardware": {"mac": MAC}, "monitor_list": {"specify": True, "servers": ["10.5.0.1", "hmi-srv"]}},
    )
    put(a, "/api/v1/terminals/PLAIN-1", {"hardware": {"mac": OTHER_MAC}})
    own = config(a, MAC).json()["monitor_list"]
    assert own == [
        {"name": "10.5.0.1", "address": "10.5.0.1", "port": 2031},
        {"name": "hmi-srv", "address": "hmi-srv", "port": 2031},
    ]
    assert config(a, OTHER_MAC).json()["monitor_list"] == [{"name": "tm-solo", "address": "127.0.0.1", "port": a.port}]


# ---------------------------------------------------------------------------- heartbeats and lights


def test_heartbeats_give_green_on_both_servers_and_silence_gives_red_within_the_timings(
    servers: ServerFactory,
) -> None:
    p = start_pair(servers)
    mac = sim_mac(0)
    put(p.a, f"/api/v1/terminals/{sim_name(0)}", {"hardware": {"mac": mac}, "connection_monitor": FAST_MONITOR})
    put(p.a, "/api/v1/terminals/NEVER-1", {"hardware": {"mac": OTHER_MAC}})
    synced(p)
    for server in p.both:
        assert light(server, mac) == {
            "name": sim_name(0),
            "mac": mac,
            "status": "never",
            "last_seen": None,
            "booted_from": None,
            "address": None,
            "state": None,
            "uptime_s": None,
        }

    # Boot from A and heartbeat to every server of the monitor list, for longer than the timings.
    began = time.monotonic()
    sim = Simulator([p.a.url, p.b.url], 1, interval_s=1.0, watch=False)

    async def boot_and_beat() -> float:
        try:
            await sim.boot_all()
            last = time.monotonic()
            while time.monotonic() - began < FAST_OFFLINE_S + 1.5:
                last = time.monotonic()
                await sim.heartbeat_round()
                await asyncio.sleep(0.5)
            return last
        finally:
            await sim.close()

    last_sent = run(boot_and_beat())
    assert sim.stats.booted == 1 and sim.stats.heartbeat_errors == 0, sim.stats.summary()
    assert sim.terminals[0].monitor == [p.a.url, p.b.url]  # the document's monitor list: both servers
    # Green on both (and still green after longer than the timings, because the heartbeats kept coming).
    for server in p.both:
        seen = light(server, mac)
        assert seen is not None and seen["status"] == "online", (server.name, seen)
        assert seen["booted_from"] == p.a.url and seen["address"] == "127.0.0.1" and seen["state"] == "running"
        assert seen["last_seen"] is not None
        assert light(server, OTHER_MAC)["status"] == "never"  # type: ignore[index]
        assert metric(server, 'thinsync_terminals{status="online"}') == 1.0
        assert any("is online" in m and sim_name(0) in m for m in events(server)), events(server)[:5]
    still_quiet = time.monotonic() - last_sent
    if still_quiet < FAST_OFFLINE_S - 0.5:  # checked soon enough to mean something on a busy machine
        assert all(light(s, mac)["status"] == "online" for s in p.both)  # type: ignore[index]

    # Silence: red on both, not before the timings lapse, and within them plus the sweep.
    red_at: dict[str, float] = {}

    def both_red() -> bool:
        for server in p.both:
            if server.name not in red_at and light(server, mac)["status"] == "offline":  # type: ignore[index]
                red_at[server.name] = time.monotonic() - last_sent
        return len(red_at) == 2

    bound = FAST_OFFLINE_S + SWEEP_SLACK_S - (time.monotonic() - last_sent)
    wait_until(both_red, bound, 0.1, what="red on both servers within the connection-monitor timings")
    for name, after in red_at.items():
        assert after >= FAST_OFFLINE_S - 0.2, f"{name} showed red {after:.1f} s after the last heartbeat"
    for server in p.both:
        seen = light(server, mac)
        assert seen["last_seen"] is not None and seen["booted_from"] == p.a.url  # type: ignore[index]
        assert metric(server, 'thinsync_terminals{status="offline"}') == 1.0
        assert any("is offline" in m and sim_name(0) in m for m in events(server)), events(server)[:5]

    # The CLI shows the same lights.
    env = {**os.environ, "THINSYNC_PASSWORD": ADMIN_PASSWORD}
    env.pop("THINSYNC_SERVER", None)
    done = subprocess.run(
        [*THINSYNC, "terminal", "status", "--server", p.b.url, "--json"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    shown = {item["mac"]: item for item in json.loads(done.stdout)}
    assert shown[mac]["status"] == "offline" and shown[OTHER_MAC]["status"] == "never"


# ---------------------------------------------------------------------------- change notification


def test_a_change_made_on_a_wakes_a_terminal_watching_b(servers: ServerFactory) -> None:
    p = start_pair(servers)
    make_plant(p.a)
    put(p.a, "/api/v1/display-servers/unused", {"address": "10.7.0.1"})
    synced(p)
    before = config(p.b, MAC).json()["config_hash"]

    # Nothing changed: the watch ends at its timeout, saying so.
    began = time.monotonic()
    quiet = get(p.b, f"/terminal/v1/{MAC}/watch", params={"hash": before, "wait": "1"})
    assert quiet.status_code == 200 and quiet.json() == {"config_hash": before, "changed": False}
    assert time.monotonic() - began >= 0.9

    def watch(server: ServerProcess, wait: float, out: dict[str, Any]) -> None:
        began = time.monotonic()
        response = get(server, f"/terminal/v1/{MAC}/watch", params={"hash": before, "wait": str(wait)})
        out["response"] = response
        out["after"] = time.monotonic() - began

    # A change the terminal does not use wakes nobody.
    unrelated: dict[str, Any] = {}
    thread = threading.Thread(target=watch, args=(p.b, 2.0, unrelated), daemon=True)
    thread.start()
    time.sleep(0.3)
    put(p.a, "/api/v1/display-servers/unused", {"address": "10.7.0.2"})
    thread.join(20)
    assert unrelated["response"].json() == {"config_hash": before, "changed": False}

    # A change made on A to a display server the terminal uses wakes the terminal watching B.
    woken: dict[str, Any] = {}
    thread = threading.Thread(target=watch, args=(p.b, 30.0, woken), daemon=True)
    thread.start()
    time.sleep(0.5)  # the watch is waiting
    changed_at = time.monotonic()
    put(p.a, "/api/v1/display-servers/ds-1", {"address": "10.1.0.11", "priority": 1, "port": 3390})
    thread.join(20)
    assert not thread.is_alive(), "the watch on B was not woken by a change made on A"
    woke_after = time.monotonic() - changed_at
    answer = woken["response"].json()
    assert woken["response"].status_code == 200 and answer["changed"] is True, answer
    assert answer["config_hash"] != before
    assert woke_after < 10, f"woken {woke_after:.1f} s after the change"
    # The new document is on B, equal to A's.
    fresh = [config(server, MAC) for server in p.both]
    assert fresh[0].content == fresh[1].content
    assert fresh[1].json()["config_hash"] == answer["config_hash"]
    assert "10.1.0.11" in fresh[1].text


# ---------------------------------------------------------------------------- fallback


def test_a_terminal_falls_back_to_b_when_a_is_down(servers: ServerFactory) -> None:
    p = start_pair(servers)
    count = 3
    for i in range(count):
        put(p.a, f"/api/v1/terminals/{sim_name(i)}", {"hardware": {"mac": sim_mac(i)}})
    synced(p)
    hashes = {i: config(p.a, sim_mac(i)).json()["config_hash"] for i in range(count)}

    up = run(simulate([p.a.url, p.b.url], count, heartbeat_rounds=1))
    assert (up.stats.booted, up.stats.failed, up.stats.fallbacks) == (count, 0, 0), up.stats.summary()
    assert {t.booted_from for t in up.terminals} == {p.a.url}
    # The same with the command line: thinsync terminal simulate --servers URL,URL --count N.
    summary = simulate_cli(f"{p.a.url},{p.b.url}", count)
    assert (summary["booted"], summary["failed"], summary["fallbacks"]) == (count, 0, 0), summary
    assert summary["heartbeats"] >= 2 * count and summary["heartbeat_errors"] == 0, summary

    p.a.kill()
    down = run(simulate([p.a.url, p.b.url], count, heartbeat_rounds=1))
    assert (down.stats.booted, down.stats.failed, down.stats.fallbacks) == (count, 0, count), down.stats.summary()
    assert {t.booted_from for t in down.terminals} == {p.b.url}
    # The same configuration as A served (the monitor list names both servers either way).
    assert {t.index: t.config_hash for t in down.terminals} == hashes
    assert all(t.monitor == [p.a.url, p.b.url] for t in down.terminals)
    # Heartbeats reach B (green there, booted from B); those to A fail.
    assert down.stats.heartbeats == count and down.stats.heartbeat_errors == count, down.stats.summary()
    for i in range(count):
        seen = light(p.b, sim_mac(i))
        assert seen is not None and seen["status"] == "online" and seen["booted_from"] == p.b.url, seen
    summary = simulate_cli(f"{p.a.url},{p.b.url}", count)
    assert (summary["booted"], summary["failed"], summary["fallbacks"]) == (count, 0, count), summary
    assert summary["heartbeat_errors"] >= count and p.a.url in summary["last_error"], summary


def simulate_cli(servers: str, count: int) -> dict[str, Any]:
    done = subprocess.run(
        [*THINSYNC, "terminal", "simulate", "--servers", servers, "--count", str(count)]
        + ["--duration", "1", "--interval", "1", "--no-watch", "--json"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- unknown terminals


def test_unknown_mac_is_refused_plainly_under_the_refuse_policy(servers: ServerFactory) -> None:
    a = servers.start("tm-a", extra_args=TFTP)
    put(a, "/api/v1/terminals/KNOWN-1", {"hardware": {"mac": MAC}})
    terminals_before = a.api("GET", "/api/v1/terminals").json()
    for path in (
        f"/terminal/v1/{UNKNOWN_MAC}/config",
        f"/boot/{UNKNOWN_MAC}.ipxe",
        f"/terminal/v1/{UNKNOWN_MAC}/watch",
    ):
        assert_plain_error(get(a, path), 404, "unknown_terminal", UNKNOWN_MAC, "policy")
    assert_plain_error(heartbeat(a, UNKNOWN_MAC, {"state": "running"}), 404, "unknown_terminal", UNKNOWN_MAC)
    done = curl_tftp(tftp_port(a), f"thinsync/{UNKNOWN_MAC}.json")
    assert done.returncode == CURL_TFTP_NOT_FOUND and done.stdout == b"", done
    # Nothing changed: no terminal object, no light, no "online" count.
    assert a.api("GET", "/api/v1/terminals").json() == terminals_before
    assert light(a, UNKNOWN_MAC) is None
    assert metric(a, 'thinsync_terminals{status="online"}') == 0.0
    # ... and the known terminal is served.
    assert config(a, MAC).status_code == 200 and heartbeat(a, MAC).status_code == 204


def test_unassigned_policy_holds_the_terminal_for_an_admin_to_assign(servers: ServerFactory) -> None:
    a = servers.start("tm-a")
    put(a, "/api/v1/settings", {"unknown_terminals": "unassigned"})
    terminals_before = a.api("GET", "/api/v1/terminals").json()["items"]

    message = assert_plain_error(config(a, UNKNOWN_MAC), 404, "unknown_terminal", UNKNOWN_MAC, "unassigned")
    assert "administrator" in message
    assert_plain_error(heartbeat(a, UNKNOWN_MAC), 404, "unknown_terminal", UNKNOWN_MAC)
    assert a.api("GET", "/api/v1/terminals").json()["items"] == terminals_before  # no object created
    held = light(a, UNKNOWN_MAC)
    assert held is not None and held["name"] is None and held["unassigned"] is True, held
    assert held["address"] == "127.0.0.1"
    assert any("waiting to be assigned" in m and UNKNOWN_MAC in m for m in events(a))

    # An administrator assigns it: it boots, and is listed once, by name.
    put(a, "/api/v1/terminals/NEW-1", {"hardware": {"mac": UNKNOWN_MAC}})
    assert config(a, UNKNOWN_MAC).json()["terminal"]["name"] == "NEW-1"
    rows = [item for item in lights(a) if item["mac"] == UNKNOWN_MAC]
    assert len(rows) == 1 and rows[0]["name"] == "NEW-1" and not rows[0].get("unassigned"), rows


def test_auto_create_on_both_servers_converges_on_one_terminal_without_conflicts(servers: ServerFactory) -> None:
    a = servers.start("tm-a", extra_args=TFTP)
    b = servers.start("tm-b", extra_args=TFTP)
    pa, pb = FaultProxy(a.port), FaultProxy(b.port)
    try:
        pair(a, b, ports={a.name: pa.port, b.name: pb.port})
        b._token = None
        p = Pair(a, b)
        synced(p)
        put(a, "/api/v1/settings", {"unknown_terminals": "auto_create", "auto_create_name_mask": "AC-{mac}"})
        synced(p)
        macs = [f"02:ac:00:00:00:{i:02x}" for i in range(4)]

        # The same new MACs boot on both servers at the same moment ...
        answers: dict[tuple[str, str], httpx2.Response] = {}
        gate = threading.Barrier(2 * (len(macs) - 1))

        def boot(server: ServerProcess, mac: str) -> None:
            gate.wait(10)
            answers[(server.name, mac)] = config(server, mac)

        threads = [threading.Thread(target=boot, args=(s, m), daemon=True) for m in macs[:-1] for s in p.both]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        # ... and one while the servers cannot reach each other, so both surely create it.
        pa.partition()
        pb.partition()
        for server in p.both:
            answers[(server.name, macs[-1])] = config(server, macs[-1])
        pa.heal()
        pb.heal()

        assert all(r.status_code == 200 for r in answers.values()), {k: r.text for k, r in answers.items()}
        wait_until(lambda: in_sync(a, b), 45, 0.2, what="the pair in sync after auto-creating")
        for mac in macs:
            name = "AC-" + mac.replace(":", "").upper()
            found = [terminals_with_mac(server, mac) for server in p.both]
            assert [len(f) for f in found] == [1, 1], found
            assert found[0] == found[1] and found[0][0]["name"] == name, found
            docs = {server.name: config(server, mac).content for server in p.both}
            assert docs["tm-a"] == docs["tm-b"]
            assert json.loads(docs["tm-a"])["terminal"]["name"] == name
        for server in p.both:
            assert status(server)["conflicts_open"] == 0
            assert server.api("GET", "/api/v1/sync/conflicts").json()["items"] == []
            assert any("created automatically" in m for m in events(server))
    finally:
        pa.close()
        pb.close()


# ---------------------------------------------------------------------------- bad input


MALFORMED = [
    "zz",
    "aa:bb:cc:dd:ee",
    "aa:bb:cc:dd:ee:ff:00",
    "gg:hh:ii:jj:kk:ll",
    "aa:bb-cc:dd:ee:ff",
    "aabbccddeeff0",
    "aa%20bb%20cc%20dd%20ee%20ff",
    "%00",
    "aa:bb:cc:dd:ee:f%C3%A9",
    "%EF%BC%A1abbccddeeff",  # a full-width letter
    "a" * 300,
]


def test_malformed_macs_are_refused_with_400_and_change_nothing(servers: ServerFactory) -> None:
    a = servers.start("tm-a")
    put(a, "/api/v1/terminals/KNOWN-1", {"hardware": {"mac": MAC}})
    lights_before = lights(a)
    for mac in MALFORMED:
        for path in (f"/terminal/v1/{mac}/config", f"/boot/{mac}.ipxe", f"/terminal/v1/{mac}/watch"):
            assert_plain_error(get(a, path), 400, "bad_request", "MAC")
        assert_plain_error(heartbeat(a, mac, {"state": "running"}), 400, "bad_request", "MAC")
    # Slashes and dot segments never reach a terminal route: a plain 4xx, nothing served.
    for path in ("/terminal/v1/../../api/v1/terminals/config", "/terminal/v1/aa%2Fbb/config", "/boot/..%2F.ipxe"):
        response = get(a, path)
        assert 400 <= response.status_code < 500 and set(response.json()) == {"error", "message"}, response.text
    assert lights(a) == lights_before
    assert not any("terminal" in m and "online" in m for m in events(a))
    assert config(a, MAC).status_code == 200 and heartbeat(a, MAC).status_code == 204


def test_tftp_path_tricks_and_writes_are_refused_and_change_nothing(servers: ServerFactory, tmp_path: Path) -> None:
    a = servers.start("tm-a", extra_args=TFTP)
    put(a, "/api/v1/terminals/KNOWN-1", {"hardware": {"mac": MAC}})
    port = tftp_port(a)
    body = config(a, MAC).content
    secret = tmp_path / "secret.json"
    secret.write_text('{"secret": true}')

    tricks = [
        ("../x", ["--path-as-is"]),
        (f"thinsync/../thinsync/{MAC}.json", ["--path-as-is"]),
        ("thinsync/../../../../etc/passwd", ["--path-as-is"]),
        ("/etc/passwd", []),  # tftp://host//etc/passwd: an absolute path
        (f"/{secret}", []),
        ("etc/passwd", []),
        ("thinsync%2F..%2F..%2Fetc%2Fpasswd", []),  # percent-encoded slashes and dots (curl decodes them)
        ("%2e%2e/%2e%2e/etc/passwd", ["--path-as-is"]),
        ("thinsync/%252e%252e%252fx.json", []),  # double-encoded: reaches the server still encoded
        (f"thinsync/{MAC}.json.bak", []),
        (f"THINSYNC/{MAC}.json", []),
        (f"thinsync//{MAC}.json", ["--path-as-is"]),
        (f"thinsync/./{MAC}.json", ["--path-as-is"]),
        ("thinsync/", []),
    ]
    for path, options in tricks:
        done = curl_tftp(port, path, *options)
        assert done.returncode in (CURL_TFTP_NOT_FOUND, CURL_TFTP_PERM), (path, done)
        assert done.stdout == b"", path
    for path in ("../x", "/etc/passwd", "thinsync%2F..%2F..%2Fetc%2Fpasswd"):
        done = curl_tftp(port, path, "--path-as-is")
        assert done.returncode == CURL_TFTP_PERM, (path, done)  # an access violation, said as such

    # Names curl cannot send: other encodings, NUL, backslashes, a too-long name; raw packets.
    for name in (
        b"thinsync/\xff\xfe.json",
        "thinsync/ａａ:bb:cc:00:00:01.json".encode(),
        b"\\etc\\passwd",
        b"thinsync\\..\\..\\x",
        b"thinsync/" + MAC.encode() + b".json ",
        b"thinsync/" + b"a" * 600 + b".json",
    ):
        answer = tftp_raw(port, rrq(name))
        assert answer is not None and answer[0] == 5, (name, answer)  # an ERROR packet, never DATA
    for packet in (b"", b"\x00\x09junk", b"\x00\x01no-terminators", rrq(f"thinsync/{MAC}.json".encode(), b"mail")):
        answer = tftp_raw(port, packet)
        assert answer is None or answer[0] == 5, (packet, answer)

    # Writes: refused, whatever the name; the document and the data dir are unchanged.
    files_before = sorted(str(f.relative_to(tmp_path)) for f in tmp_path.rglob("*") if "logs" not in f.parts)
    for path in (f"thinsync/{MAC}.json", "evil.txt", "../evil.txt"):
        done = curl_tftp(port, path, "--path-as-is", "-T", str(secret))
        assert done.returncode in (CURL_TFTP_PERM, CURL_TFTP_ILLEGAL), (path, done)
    answer = tftp_raw(port, struct.pack("!H", 2) + f"thinsync/{MAC}.json".encode() + b"\0octet\0")
    assert answer is not None and answer[:2] == (5, 2), answer  # ERROR, access violation
    files_after = sorted(str(f.relative_to(tmp_path)) for f in tmp_path.rglob("*") if "logs" not in f.parts)
    new = [f for f in set(files_after) - set(files_before) if "evil" in f or f.endswith(".json") and "ready" not in f]
    assert not new, new
    assert not Path("evil.txt").exists()

    # The real terminal is still served, the same bytes over TFTP and HTTP.
    done = curl_tftp(port, f"thinsync/{MAC}.json")
    assert done.returncode == 0 and done.stdout == body == config(a, MAC).content
    assert a.proc is not None and a.proc.poll() is None


def test_oversized_heartbeat_bodies_are_refused_and_change_nothing(servers: ServerFactory) -> None:
    a = servers.start("tm-a")
    put(a, "/api/v1/terminals/KNOWN-1", {"hardware": {"mac": MAC}})
    put(a, "/api/v1/terminals/KNOWN-2", {"hardware": {"mac": OTHER_MAC}})
    config(a, MAC)

    def padded(size: int) -> bytes:
        head = b'{"state":"running","pad":"'
        return head + b"x" * (size - len(head) - 2) + b'"}'

    assert len(padded(4097)) == 4097
    for raw in (padded(4097), padded(64 * 1024), b"x" * (2 * 1024 * 1024)):
        response = httpx2.post(f"{a.url}/terminal/v1/{MAC}/status", content=raw, timeout=30)
        assert_plain_error(response, 413, "too_large")
    assert light(a, MAC)["status"] == "never"  # type: ignore[index]
    # Bodies that are not a JSON object are a plain 400, and change nothing either.
    for raw in (b"[1, 2]", b"{not json", b'"running"'):
        response = httpx2.post(f"{a.url}/terminal/v1/{MAC}/status", content=raw, timeout=15)
        assert_plain_error(response, 400, "bad_request", "heartbeat")
    assert light(a, MAC)["status"] == "never"  # type: ignore[index]
    # The limit is 4096 bytes: exactly that much is fine.
    response = httpx2.post(f"{a.url}/terminal/v1/{MAC}/status", content=padded(4096), timeout=15)
    assert response.status_code == 204, response.text
    assert light(a, MAC)["status"] == "online"  # type: ignore[index]
    assert heartbeat(a, OTHER_MAC).status_code == 204 and config(a, OTHER_MAC).status_code == 200


def test_a_flood_of_heartbeats_is_refused_while_other_terminals_are_served(servers: ServerFactory) -> None:
    # A low per-address limit (a setting) so that one test client can exceed it.
    a = servers.start("tm-a", env={"THINSYNC_HEARTBEATS_PER_ADDRESS": "20"})
    macs = [f"02:f1:00:00:00:{i:02x}" for i in range(6)]
    for i, mac in enumerate(macs):
        put(a, f"/api/v1/terminals/FLOOD-{i}", {"hardware": {"mac": mac}})

    # One terminal flooding: after a short burst every heartbeat is refused (per-MAC limit) ...
    with httpx2.Client(timeout=15) as client:
        codes = [client.post(f"{a.url}/terminal/v1/{macs[0]}/status").status_code for _ in range(14)]
    assert set(codes) <= {204, 429} and codes.count(204) >= 5 and codes.count(429) >= 1, codes
    last = httpx2.post(f"{a.url}/terminal/v1/{macs[0]}/status", timeout=15)
    assert_plain_error(last, 429, "too_many_requests", "heartbeats")
    time.sleep(1.1)  # the per-address budget refills

    # ... and one address sending for many terminals is refused past its limit (per-address limit),
    flood: list[int] = []
    with httpx2.Client(timeout=15) as client:
        for _ in range(8):
            for mac in macs[1:5]:
                flood.append(client.post(f"{a.url}/terminal/v1/{mac}/status").status_code)
    assert set(flood) <= {204, 429} and flood.count(429) >= 5 and flood.count(204) <= 26, flood
    # while a terminal at another address is still served (heartbeat and configuration),
    transport = httpx2.HTTPTransport(local_address="127.0.0.2")
    with httpx2.Client(transport=transport, timeout=15) as other:
        assert other.post(f"{a.url}/terminal/v1/{macs[5]}/status", json={"state": "running"}).status_code == 204
        assert other.get(f"{a.url}/terminal/v1/{macs[5]}/config").status_code == 200
    seen = light(a, macs[5])
    assert seen is not None and seen["status"] == "online" and seen["address"] == "127.0.0.2", seen
    # and the flooding address can still fetch configurations (boots are not heartbeats).
    assert config(a, macs[1]).status_code == 200


# ---------------------------------------------------------------------------- licensing hook


@pytest.mark.anyio
async def test_the_boot_path_asks_the_licensing_hook_which_allows_everything_without_a_licence(
    inproc: InProcess,
) -> None:
    for i in range(5):
        response = await inproc.call("PUT", f"/api/v1/terminals/LIC-{i}", json={"hardware": {"mac": sim_mac(i)}})
        assert response.status_code == 201, response.text
    terminals = inproc.server.services.terminals
    # Without a licence installed (standard mode, no terminal limit) the hook lets every terminal boot.
    assert terminals.may_boot("ANY") == (True, "")
    for i in range(5):
        assert (await inproc.client.get(f"/terminal/v1/{sim_mac(i)}/config")).status_code == 200

    asked: list[str] = []

    def allow_all(name: str) -> tuple[bool, str]:
        asked.append(name)
        return True, ""

    # The hook is asked on every boot (HTTP and iPXE), for documents already cached too.
    terminals.may_boot = allow_all
    for i in range(5):
        assert (await inproc.client.get(f"/terminal/v1/{sim_mac(i)}/config")).status_code == 200
    assert (await inproc.client.get(f"/boot/{sim_mac(0)}.ipxe")).status_code == 200
    assert asked == [f"LIC-{i}" for i in range(5)] + ["LIC-0"]

    # A refusing hook refuses plainly, with its reason; the others still boot.
    terminals.may_boot = lambda name: (name != "LIC-1", "the licence covers fewer terminals")
    response = await inproc.client.get(f"/terminal/v1/{sim_mac(1)}/config")
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["error"] == "not_bootable" and "LIC-1" in body["message"] and "licence covers" in body["message"]
    assert (await inproc.client.get(f"/terminal/v1/{sim_mac(0)}/config")).status_code == 200


@pytest.mark.anyio
async def test_simultaneous_boots_are_resolved_together_each_with_its_own_answer(inproc: InProcess) -> None:
    """A boot storm in process: known, unknown and repeated MACs at once; each gets its own answer."""
    count = 300
    for start in range(0, count, 50):
        ops = [
            inproc.call("PUT", f"/api/v1/terminals/{sim_name(i)}", json={"hardware": {"mac": sim_mac(i)}})
            for i in range(start, start + 50)
        ]
        assert all(r.status_code == 201 for r in await asyncio.gather(*ops))
    terminals = inproc.server.services.terminals
    resolved: list[int] = []
    original = terminals._resolve_many

    def counting(macs: list[str]) -> Any:
        resolved.append(len(macs))
        return original(macs)

    terminals._resolve_many = counting  # type: ignore[method-assign]
    macs = [sim_mac(i) for i in range(count)] + [sim_mac(i) for i in range(0, count, 3)] + [UNKNOWN_MAC, OTHER_MAC]
    answers = await asyncio.gather(
        *(inproc.client.get(f"/terminal/v1/{mac}/config") for mac in macs), return_exceptions=True
    )
    for mac, answer in zip(macs, answers, strict=True):
        assert isinstance(answer, httpx2.Response), answer
        if mac in (UNKNOWN_MAC, OTHER_MAC):
            assert answer.status_code == 404 and answer.json()["error"] == "unknown_terminal", answer.text
        else:
            assert answer.status_code == 200, answer.text
            assert answer.json()["terminal"]["mac"] == mac
    # Fewer worker-thread jobs than terminals, and no terminal resolved twice while it was waiting.
    assert resolved and sum(resolved) <= count + 2 and len(resolved) < count, resolved
