"""Helpers for the synchronization tests: paired servers behind fault proxies, write load, convergence."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx2

from tests.helpers.cluster import pair, status, wait_until
from tests.helpers.process import ServerFactory, ServerProcess
from tests.helpers.proxy import FaultProxy
from thinsync.model.registry import COLLECTIONS

CONVERGE_S = 45.0


def start_servers(
    servers: ServerFactory, *names: str, env: dict[str, dict[str, str]] | None = None
) -> list[ServerProcess]:
    """Start several servers at once (init and start overlap: a start takes seconds on a busy machine)."""
    env = env or {}
    with ThreadPoolExecutor(len(names)) as pool:
        futures = [pool.submit(servers.start, name, env=env.get(name)) for name in names]
        return [future.result() for future in futures]


def relogin(*servers: ServerProcess) -> None:
    """Pairing replaces a secondary's admin accounts with the primary's: tokens issued before are void."""
    for server in servers:
        server._token = None


@dataclass
class Proxied:
    """Two paired servers, each reached by the other only through the proxy in front of it."""

    a: ServerProcess
    b: ServerProcess
    pa: FaultProxy
    pb: FaultProxy

    @property
    def proxies(self) -> tuple[FaultProxy, FaultProxy]:
        return self.pa, self.pb

    def partition(self) -> None:
        self.pa.partition()
        self.pb.partition()

    def heal(self) -> None:
        self.pa.heal()
        self.pb.heal()


@contextlib.contextmanager
def proxied_pair(
    servers: ServerFactory,
    mode: str = "redundant",
    env_a: dict[str, str] | None = None,
    env_b: dict[str, str] | None = None,
    wait: bool = True,
) -> Iterator[Proxied]:
    """Start tm-a and tm-b, put a proxy in front of each, pair them through the proxies; proxies closed after."""
    a, b = start_servers(servers, "tm-a", "tm-b", env={"tm-a": env_a or {}, "tm-b": env_b or {}})
    pa, pb = FaultProxy(a.port), FaultProxy(b.port)
    try:
        pair(a, b, mode=mode, ports={a.name: pa.port, b.name: pb.port})
        relogin(b)
        if wait:
            converge(a, b)
        yield Proxied(a, b, pa, pb)
    finally:
        pa.close()
        pb.close()


PUBLIC_KINDS = tuple(COLLECTIONS)


def public_state(server: ServerProcess) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sync status and every public object (kind -> name -> body), read over one connection."""
    with server.client() as c:
        shown = c.get("/api/v1/sync/status").json()
        found: dict[str, Any] = {}
        for kind in PUBLIC_KINDS:
            found[kind] = {o["name"]: o for o in c.get(f"/api/v1/{kind}").json()["items"]}
        for kind in ("settings", "server-list"):
            found[kind] = c.get(f"/api/v1/{kind}").json()
    return shown, found


def identical(*servers: ServerProcess) -> bool:
    """Connected, nothing queued, equal digests, and every public object equal on every server."""
    states = [public_state(s) for s in servers]
    if not all(shown["in_sync"] for shown, _ in states) or len({shown["digest"] for shown, _ in states}) != 1:
        return False
    return all(found == states[0][1] for _, found in states[1:])


def converge(*servers: ServerProcess, timeout: float = CONVERGE_S) -> None:
    wait_until(lambda: identical(*servers), timeout, 0.2, what=f"{', '.join(s.name for s in servers)} identical")


def peer_of(server: ServerProcess, name: str) -> dict[str, Any]:
    return next(p for p in status(server)["peers"] if p["name"] == name)


def conflicts(server: ServerProcess) -> list[dict[str, Any]]:
    response = server.api("GET", "/api/v1/sync/conflicts")
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def node_value(server: ServerProcess, key: str) -> str | None:
    """A node-local value read straight from the server's database (read-only)."""
    conn = sqlite3.connect(f"file:{server.data / 'thinsync.db'}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT value FROM node WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SSE:
    """Reads GET /api/v1/changes/stream in a thread (bounded time) and keeps every event's JSON."""

    def __init__(self, server: ServerProcess, seconds: float = 30.0) -> None:
        self.events: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._server = server
        self._seconds = seconds
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"sse-{server.name}")
        self._thread.start()
        assert self.connected.wait(10), f"the change stream of {server.name} did not open"

    def _run(self) -> None:
        """Read with a short read timeout and resume with `?after=` the last event id (the stream's own
        resume), so the reader notices close() within a second and loses nothing in between."""
        deadline = time.monotonic() + self._seconds
        headers = {"Authorization": f"Bearer {self._server.token()}"}
        last: int | None = None
        with httpx2.Client(base_url=self._server.url, timeout=httpx2.Timeout(10.0, read=1.0)) as c:
            while not self._stop.is_set() and time.monotonic() < deadline:
                params = {} if last is None and not self.connected.is_set() else {"after": last or 0}
                try:
                    with c.stream("GET", "/api/v1/changes/stream", headers=headers, params=params) as response:
                        for line in response.iter_lines():
                            if line.startswith(":"):
                                self.connected.set()
                            elif line.startswith("data:"):
                                event = json.loads(line[5:])
                                self.events.append(event)
                                last = int(event["id"])
                            if self._stop.is_set() or time.monotonic() > deadline:
                                break
                except httpx2.ReadTimeout:
                    continue  # nothing new for a second: resume
                except httpx2.HTTPError:
                    time.sleep(0.2)
        self.connected.set()

    def touched(self, kind: str, name: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if any((i["kind"], i["name"]) == (kind, name) for i in e["items"])]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(15)


@dataclass
class WriteLoad:
    """Writes distinct display servers `<prefix><i>` to one server from a thread; keeps what got a 2xx."""

    server: ServerProcess
    prefix: str
    count: int
    pause_s: float = 0.01
    acked: dict[str, str] = field(default_factory=dict)
    failed: int = 0
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> WriteLoad:
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"writes-{self.prefix}")
        self._thread.start()
        return self

    def _run(self) -> None:
        client: httpx2.Client | None = None
        try:
            for i in range(self.count):
                if self._stop.is_set():
                    return
                name = f"{self.prefix}{i}"
                try:
                    client = client or self.server.client()
                    body = {"address": f"10.1.{i // 250}.{i % 250 + 1}"}
                    response = client.put(f"/api/v1/display-servers/{name}", json=body)
                    if response.is_success:
                        self.acked[name] = response.json()["version"]
                    else:
                        self.failed += 1
                except (httpx2.HTTPError, OSError):
                    # The server is down or restarting: not acknowledged, so not promised.
                    self.failed += 1
                    if client is not None:
                        client.close()
                    client = None
                    time.sleep(0.05)
                time.sleep(self.pause_s)
        finally:
            if client is not None:
                client.close()

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def join(self, timeout: float = 60.0) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(15)
        assert not self._thread.is_alive(), f"write load {self.prefix} did not finish"

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


def assert_acked_present(loads: list[WriteLoad], *servers: ServerProcess) -> None:
    """Every acknowledged write is on every server (distinct names: nothing supersedes them)."""
    for server in servers:
        present = {o["name"] for o in server.api("GET", "/api/v1/display-servers?limit=1000").json()["items"]}
        for load in loads:
            missing = sorted(set(load.acked) - present)
            assert not missing, f"{server.name} lacks acknowledged writes {missing[:10]} ({len(missing)} in all)"


class NodeFilterProxy(FaultProxy):
    """A FaultProxy that also refuses peer connections signed by some node ids (read from the request
    head), so one server pair can be cut while a third server still reaches both."""

    def __init__(self, target_port: int) -> None:
        self.refused_nodes: set[str] = set()
        super().__init__(target_port)

    def refuse(self, *node_ids: str) -> None:
        self.refused_nodes = set(node_ids)
        self.cut()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = b""
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(2.0):
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    data = await reader.read(65536)
                    if not data:
                        break
                    head += data
        if any(node.encode() in head for node in self.refused_nodes) or self.mode == "refuse" or not head:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        up_writer.write(head)
        self._conns.update({writer, up_writer})
        with contextlib.suppress(asyncio.CancelledError):  # close() cancels handlers; end them quietly
            await asyncio.gather(
                self._pipe(reader, up_writer, to_server=True),
                self._pipe(up_reader, writer, to_server=False),
                return_exceptions=True,
            )
        self._conns.difference_update({writer, up_writer})


def finish(net: Proxied, *loads: WriteLoad) -> None:
    for load in loads:
        load.join()
    net.heal()
    converge(net.a, net.b)
    assert_acked_present(list(loads), net.a, net.b)
    assert status(net.a)["digest"] == status(net.b)["digest"]


def loads_on_both(net: Proxied, count: int, pause_s: float = 0.01) -> tuple[WriteLoad, WriteLoad]:
    return (
        WriteLoad(net.a, "wa", count, pause_s).start(),
        WriteLoad(net.b, "wb", count, pause_s).start(),
    )
