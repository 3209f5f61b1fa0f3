"""Virtual terminals for demos, tests and boot-storm benchmarks: boot from the first reachable
server (falling back to the next), heartbeat to every server of the monitor list, re-fetch when
the configuration changes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2


def sim_mac(index: int) -> str:
    """A locally administered MAC for virtual terminal `index`."""
    return "02:00:00:" + ":".join(f"{b:02x}" for b in index.to_bytes(3, "big"))


def sim_name(index: int) -> str:
    return f"SIM-{index:05d}"


@dataclass
class Stats:
    booted: int = 0
    failed: int = 0
    fallbacks: int = 0
    heartbeats: int = 0
    heartbeat_errors: int = 0
    refetches: int = 0
    boot_ms: list[float] = field(default_factory=list)
    last_error: str = ""
    started: float = field(default_factory=time.monotonic)
    all_booted_s: float | None = None

    def percentile(self, q: float) -> float:
        if not self.boot_ms:
            return 0.0
        ordered = sorted(self.boot_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        return {
            "booted": self.booted,
            "failed": self.failed,
            "fallbacks": self.fallbacks,
            "heartbeats": self.heartbeats,
            "heartbeat_errors": self.heartbeat_errors,
            "refetches": self.refetches,
            "boot_p50_ms": round(self.percentile(0.5), 2),
            "boot_p99_ms": round(self.percentile(0.99), 2),
            "all_booted_s": None if self.all_booted_s is None else round(self.all_booted_s, 3),
            "last_error": self.last_error,
        }


@dataclass
class Terminal:
    index: int
    mac: str
    booted_from: str | None = None
    config_hash: str | None = None
    monitor: list[str] = field(default_factory=list)


class Simulator:
    def __init__(
        self, servers: list[str], count: int, interval_s: float = 5.0, watch: bool = True, concurrency: int = 256
    ) -> None:
        self.servers = [s.rstrip("/") for s in servers]
        self.terminals = [Terminal(i, sim_mac(i)) for i in range(count)]
        self.interval_s = interval_s
        self.watch = watch
        self.stats = Stats()
        self._gate = asyncio.Semaphore(concurrency)
        self._client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(10.0, connect=3.0),
            limits=httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

        # Each watching terminal holds one long poll open: they get a pool of their own so that
        # boots and heartbeats never wait behind them.
        self._watch_client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(40.0, connect=3.0),
            limits=httpx2.Limits(max_connections=count + 1, max_keepalive_connections=count + 1),
        )

    async def close(self) -> None:
        await self._client.aclose()
        await self._watch_client.aclose()

    async def boot_all(self) -> None:
        await asyncio.gather(*(self._boot(t) for t in self.terminals))
        if self.stats.failed == 0:
            self.stats.all_booted_s = time.monotonic() - self.stats.started

    async def _boot(self, terminal: Terminal) -> None:
        for position, server in enumerate(self.servers):
            begin = time.perf_counter()
            try:
                async with self._gate:
                    response = await self._client.get(f"{server}/terminal/v1/{terminal.mac}/config")
            except httpx2.HTTPError as exc:
                self.stats.last_error = f"{server}: {type(exc).__name__}"
                continue
            if response.status_code != 200:
                self.stats.last_error = f"{server}: {response.status_code} {response.text[:120]}"
                continue
            doc = response.json()
            self.stats.boot_ms.append((time.perf_counter() - begin) * 1000)
            self.stats.booted += 1
            self.stats.fallbacks += position > 0
            terminal.booted_from = server
            terminal.config_hash = doc["config_hash"]
            terminal.monitor = [f"http://{e['address']}:{e['port']}" for e in doc["monitor_list"]] or [server]
            return
        self.stats.failed += 1

    async def heartbeat_round(self) -> None:
        await asyncio.gather(*(self._heartbeat(t) for t in self.terminals if t.booted_from))

    async def _heartbeat(self, terminal: Terminal) -> None:
        body = {
            "state": "running",
            "booted_from": terminal.booted_from,
            "uptime_s": round(time.monotonic() - self.stats.started, 1),
        }
        for server in terminal.monitor:
            try:
                async with self._gate:
                    response = await self._client.post(f"{server}/terminal/v1/{terminal.mac}/status", json=body)
                ok = response.status_code == 204
                if not ok:
                    self.stats.last_error = f"heartbeat to {server}: {response.status_code} {response.text[:120]}"
            except httpx2.HTTPError as exc:
                ok = False
                self.stats.last_error = f"heartbeat to {server}: {type(exc).__name__}"
            self.stats.heartbeats += ok
            self.stats.heartbeat_errors += not ok

    async def _watch(self, terminal: Terminal) -> None:
        while True:
            server = terminal.booted_from or self.servers[0]
            try:
                response = await self._watch_client.get(
                    f"{server}/terminal/v1/{terminal.mac}/watch",
                    params={"hash": terminal.config_hash or "", "wait": "30"},
                )
                if response.status_code == 200 and response.json().get("changed"):
                    self.stats.refetches += 1
                    await self._boot(terminal)
                    self.stats.booted -= 1  # a re-fetch is not a new boot
            except httpx2.HTTPError:
                await asyncio.sleep(1.0)

    async def run(self, duration_s: float | None) -> None:
        """Boot every terminal, then heartbeat (and watch) until `duration_s` passes (None: forever)."""
        await self.boot_all()
        watchers = [asyncio.create_task(self._watch(t)) for t in self.terminals] if self.watch else []
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while deadline is None or time.monotonic() < deadline:
                await self.heartbeat_round()
                await asyncio.sleep(self.interval_s)
        finally:
            for task in watchers:
                task.cancel()


async def create_terminals(server: str, user: str, password: str, count: int) -> int:
    """Configure SIM-nnnnn terminals with the simulator's MACs (through the admin API)."""
    async with httpx2.AsyncClient(base_url=server.rstrip("/"), timeout=httpx2.Timeout(30.0, connect=5.0)) as client:
        login = await client.post("/api/v1/login", json={"username": user, "password": password})
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        gate = asyncio.Semaphore(16)
        created = 0

        async def put(index: int) -> None:
            nonlocal created
            async with gate:
                response = await client.put(
                    f"/api/v1/terminals/{sim_name(index)}",
                    headers=headers,
                    json={"hardware": {"mac": sim_mac(index)}, "description": "simulated"},
                )
            created += response.status_code == 201

        await asyncio.gather(*(put(i) for i in range(count)))
        return created
