"""Terminal service benchmarks against a real paired pair (tm-a primary, tm-b secondary):

* `terminal_boot_storm`: 5,000 configured terminals (10 groups, each with a screen naming a display
  client with two display servers in failover order); 5,000 virtual terminals start at the same
  moment, each on its own new TCP connection, and GET /terminal/v1/{mac}/config from tm-a, falling
  back to tm-b on any error. Every run starts with the servers' document caches cold (a change to a
  display server clears them, as any configuration change does). Reported: time until every
  terminal has its document, each terminal's boot time from the storm's start (p50/p99), the
  latency of each fetch (connect to last byte, p50/p99), errors and fallbacks.
  Target (issue): all booted within 5 s.
* `terminal_heartbeats`: heartbeat ingest per server with 10,000 configured terminals (distinct
  MACs in turn, so each terminal's 5/s limit never applies): POST /terminal/v1/{mac}/status on
  keep-alive connections, closed loop (maximum) and open loop at the target rate (latency from the
  scheduled send). Target: >= 2,000 heartbeats/s per server (10,000 terminals at the 5 s default).
* `terminal_memory`: resident memory (VmRSS) of each server of a fresh pair with 10,000 terminals
  configured, after every configuration was served once (by tm-a) and every terminal sent one
  heartbeat to each server (so both hold a cached document and a light per terminal).
  Target: RSS <= 150 MB.

Terminals are created fast: committed straight into tm-a's store (the one write path, in process)
before tm-a starts; pairing then copies them to tm-b. The client is a minimal raw HTTP/1.1 client
on asyncio streams (uvloop when importable) so that it costs the two shared cores little.
All load comes from 127.0.0.1, so the servers run with THINSYNC_HEARTBEATS_PER_ADDRESS raised
(the per-address flood limit would otherwise cap one address at 5,000/s); per-terminal limits stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import percentile, proc_cpu_seconds
from bench.report import BenchResult, Plot, Series, Table, load_now, machine_info, median
from bench.servers import (
    ServerUnderTest,
    in_sync,
    server_python,
    server_runtime,
    start_pair,
    stopping,
    wait_until,
)
from bench.stats import CpuMeter
from thinsync.clock import SystemClock
from thinsync.store import ChangeRequest, Op, Store

STORM = "terminal_boot_storm"
HEARTBEATS = "terminal_heartbeats"
MEMORY = "terminal_memory"
TARGET_STORM_S = 5.0
TARGET_HEARTBEATS_S = 2000.0
TARGET_RSS_MB = 150.0
CARRIED_FRACTION = 0.95
# Raised for the benchmark: every virtual terminal sends from 127.0.0.1 (see the module docstring).
SERVER_ENV = {"THINSYNC_HEARTBEATS_PER_ADDRESS": "1000000"}
GROUPS = 10
PERCENTS: list[float | None] = [float(q) for q in range(1, 101)]
Log = Callable[[str], Any]


def bench_mac(i: int) -> str:
    return "02:be:00:" + ":".join(f"{b:02x}" for b in i.to_bytes(3, "big"))


def bench_name(i: int) -> str:
    return f"BT-{i:05d}"


# ---------------------------------------------------------------------------- configuration


def plant_ops(count: int) -> list[Op]:
    """Display servers, clients and groups, then `count` terminals spread over the groups."""
    ops: list[Op] = []
    for g in range(GROUPS):
        ops.append(Op("display-servers", f"ds-{g}-a", "put", {"address": f"10.20.{g}.1", "priority": 10}))
        ops.append(Op("display-servers", f"ds-{g}-b", "put", {"address": f"10.20.{g}.2", "priority": 20}))
        ops.append(
            Op(
                "display-clients",
                f"hmi-{g}",
                "put",
                {"display_servers": [f"ds-{g}-a", f"ds-{g}-b"], "app_link": {"program": "C:/hmi/run.exe"}},
            )
        )
        ops.append(
            Op(
                "terminal-groups",
                f"line-{g}",
                "put",
                {
                    "firmware": "tc-fw-4.2",
                    "screens": [{"display_clients": [f"hmi-{g}"]}],
                    "connection_monitor": {"interval_s": 5, "ping_retry": 3, "ping_timeout_s": 1},
                },
            )
        )
    for i in range(count):
        body = {"group": f"line-{i % GROUPS}", "hardware": {"mac": bench_mac(i)}, "description": f"bench {i}"}
        ops.append(Op("terminals", bench_name(i), "put", body))
    return ops


def seed(server: ServerUnderTest, count: int) -> float:
    """Commit the plant into the (stopped) server's store through the one write path; seconds taken."""
    if not server.initialised:
        server.init()
    began = time.perf_counter()
    store = Store.open(server.db_path, SystemClock())
    try:
        ops = plant_ops(count)
        for start in range(0, len(ops), 2000):
            store.commit_sync(ChangeRequest("bench", "terminal benchmark plant", tuple(ops[start : start + 2000])))
    finally:
        store.close()
    return time.perf_counter() - began


def start_seeded_pair(root: Path, count: int, log: Log) -> tuple[ServerUnderTest, ServerUnderTest]:
    python = server_python()
    a = ServerUnderTest(root, python, "tm-a", env=SERVER_ENV)
    b = ServerUnderTest(root, python, "tm-b", env=SERVER_ENV)
    seconds = seed(a, count)
    log(f"[terminals] {count} terminals committed into tm-a's store in {seconds:.1f} s")
    began = time.perf_counter()
    start_pair(a, b, timeout=180)
    log(f"[terminals] pair started and in sync in {time.perf_counter() - began:.1f} s")
    return a, b


def cool_caches(a: ServerUnderTest, b: ServerUnderTest, tag: int) -> None:
    """A configuration change (to a display server no terminal uses) clears every document cache."""
    response = a.api("PUT", "/api/v1/display-servers/bench-bump", json={"address": f"10.99.{tag // 256}.{tag % 256}"})
    response.raise_for_status()
    version = response.json()["version"]
    wait_until(
        lambda: b.api("GET", "/api/v1/display-servers/bench-bump").json().get("version") == version,
        30,
        0.05,
        what="the cache-clearing change on tm-b",
    )
    # The servers then compare digests; let that finish so the storm has the machine to itself.
    wait_until(lambda: in_sync(a, b), 30, 0.1, what="the pair in sync after the cache-clearing change")
    time.sleep(0.5)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


# ---------------------------------------------------------------------------- raw HTTP client


class Failure(Exception):
    """No usable answer: connection error, timeout, malformed response, or a non-2xx status."""


class Conn:
    """One HTTP/1.1 connection (kept alive between requests); reconnects after a failure."""

    def __init__(self, port: int, timeout: float = 15.0) -> None:
        self.port = port
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: bytes, path: str, body: bytes = b"") -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._request(method, path, body)
        except TimeoutError as exc:
            await self.close()
            raise Failure("timeout") from exc
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError) as exc:
            await self.close()
            raise Failure(type(exc).__name__) from exc

    async def _request(self, method: bytes, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = b"%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (method, path.encode(), self.port)
        if body:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        self.writer.write(head + b"\r\n" + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        payload = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def run_async(coro: Any) -> Any:
    """Run the client on uvloop when it is installed (less client CPU on the shared cores)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# ---------------------------------------------------------------------------- boot storm


@dataclass(frozen=True)
class StormPlan:
    terminals: int
    runs: int
    timeout_s: float = 30.0


STORM_FULL = StormPlan(terminals=5000, runs=5)
STORM_QUICK = StormPlan(terminals=500, runs=1)


async def storm(ports: list[int], count: int, timeout_s: float) -> dict[str, Any]:
    """Every virtual terminal starts at once on its own connection: first server, then the next."""
    fetch_ms: list[float] = []
    booted_s: list[float] = []
    errors: dict[str, int] = {}
    fallbacks = 0
    failed = 0
    hashes: dict[str, int] = {}
    start = asyncio.Event()
    t0 = 0.0

    async def terminal(i: int) -> None:
        nonlocal fallbacks, failed
        mac = bench_mac(i)
        await start.wait()
        for position, port in enumerate(ports):
            conn = Conn(port, timeout_s)
            began = time.perf_counter()
            try:
                status, body = await conn.request(b"GET", f"/terminal/v1/{mac}/config")
                if status != 200:
                    raise Failure(f"http_{status}")
                if mac.encode() not in body:
                    raise Failure("wrong_document")
            except Failure as exc:
                errors[str(exc)] = errors.get(str(exc), 0) + 1
                continue
            finally:
                await conn.close()
            done = time.perf_counter()
            fetch_ms.append((done - began) * 1000.0)
            booted_s.append(done - t0)
            fallbacks += position > 0
            digest = json.loads(body)["config_hash"]
            hashes[digest] = hashes.get(digest, 0) + 1
            return
        failed += 1

    tasks = [asyncio.create_task(terminal(i)) for i in range(count)]
    await asyncio.sleep(0.2)  # every task is parked at the start line
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    return {
        "terminals": count,
        "booted": len(booted_s),
        "failed": failed,
        "fallbacks": fallbacks,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "all_booted_s": max(booted_s) if booted_s and not failed else None,
        "wall_s": wall,
        "boot_p50_s": percentile(booted_s, 50),
        "boot_p99_s": percentile(booted_s, 99),
        "fetch_p50_ms": percentile(fetch_ms, 50),
        "fetch_p99_ms": percentile(fetch_ms, 99),
        "fetch_max_ms": max(fetch_ms) if fetch_ms else None,
        "distinct_documents": len(hashes),
        "client_cpu": round((time.process_time() - cpu0) / wall, 3) if wall else None,
        # Boot time at each percentile 1..100 (the plot's curve).
        "cdf_s": [round(percentile(booted_s, q) or 0.0, 4) for q in range(1, 101)] if booted_s else [],
    }


def run_storm(quick: bool = False, log: Log = print) -> BenchResult:
    plan = STORM_QUICK if quick else STORM_FULL
    machine = machine_info()
    runtime = server_runtime(server_python())
    runs: list[dict[str, Any]] = []
    fallback_run: dict[str, Any] | None = None
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="thinsync-bench-terminals-") as tmp:
        a, b = start_seeded_pair(Path(tmp), plan.terminals, log)
        with stopping(a, b, log=log):
            for run_no in range(plan.runs):
                cool_caches(a, b, run_no)
                meter = CpuMeter({"tm-a": a.pid, "tm-b": b.pid})
                cpu0 = [proc_cpu_seconds(s.pid) or 0.0 for s in (a, b)]
                meter.start()
                result = run_async(storm([a.port, b.port], plan.terminals, plan.timeout_s))
                result["server_cpu"] = meter.stop()
                cpu1 = [proc_cpu_seconds(s.pid) or 0.0 for s in (a, b)]
                # CPU time per boot moves far less with other load on the machine than the times do.
                result["server_cpu_ms_per_boot"] = (sum(cpu1) - sum(cpu0)) * 1000.0 / plan.terminals
                result["rss_mb"] = {"tm-a": rss_mb(a.pid), "tm-b": rss_mb(b.pid)}
                runs.append(result)
                log(
                    f"[{STORM}] run {run_no + 1}: booted {result['booted']}/{plan.terminals} "
                    f"in {_s(result['all_booted_s'])} s; boot p50 {_s(result['boot_p50_s'])} s "
                    f"p99 {_s(result['boot_p99_s'])} s; fetch p50 {_s(result['fetch_p50_ms'], 1)} ms "
                    f"p99 {_s(result['fetch_p99_ms'], 1)} ms; errors {result['errors']} {result['error_kinds']} "
                    f"fallbacks {result['fallbacks']}; cpu {result['server_cpu']} client {result['client_cpu']}; "
                    f"server CPU {result['server_cpu_ms_per_boot']:.3f} ms per boot"
                )
            # The same storm with tm-a down: every terminal falls back to tm-b (cold cache there too).
            cool_caches(a, b, plan.runs)
            a.stop()
            fallback_run = run_async(storm([a.port, b.port], plan.terminals, plan.timeout_s))
            log(
                f"[{STORM}] tm-a down: booted {fallback_run['booted']} in {_s(fallback_run['all_booted_s'])} s, "
                f"fallbacks {fallback_run['fallbacks']}, fetch p99 {_s(fallback_run['fetch_p99_ms'], 1)} ms"
            )
    machine["load_at_end"] = load_now()
    return _storm_result(plan, machine, runtime, runs, fallback_run, time.monotonic() - began, quick)


def _storm_result(
    plan: StormPlan,
    machine: dict[str, Any],
    runtime: dict[str, Any],
    runs: list[dict[str, Any]],
    fallback_run: dict[str, Any] | None,
    elapsed: float,
    quick: bool,
) -> BenchResult:
    inf = float("inf")
    all_booted = [r["all_booted_s"] if r["all_booted_s"] is not None else inf for r in runs]
    med_all = median(all_booted)
    worst_all = max(all_booted) if all_booted else None
    med = {key: median([r.get(key) for r in runs]) for key in runs[0] if isinstance(runs[0][key], int | float)}
    fetch_all = [r["fetch_p99_ms"] for r in runs if r["fetch_p99_ms"] is not None]
    passed = bool(runs) and all(
        r["failed"] == 0 and r["all_booted_s"] is not None and r["all_booted_s"] <= TARGET_STORM_S for r in runs
    )
    verdict: bool | None = None if quick else passed  # a quick run (fewer terminals) cannot show the target
    measured = (
        f"{plan.terminals:,} booted in {_s(med_all)} s median (worst {_s(worst_all)} s of {len(runs)} runs); "
        f"fetch p50 {_s(med.get('fetch_p50_ms'), 0)} ms, p99 {_s(med.get('fetch_p99_ms'), 0)} ms; "
        f"errors {sum(r['errors'] for r in runs)}; server CPU {_s(med.get('server_cpu_ms_per_boot'), 2)} ms per boot"
    )
    rows: list[list[Any]] = []
    for number, r in enumerate(runs, 1):
        rows.append(_storm_row(f"run {number}", r))
    rows.append(
        [
            "median",
            med.get("booted"),
            med.get("failed"),
            med_all,
            med.get("boot_p50_s"),
            med.get("boot_p99_s"),
            med.get("fetch_p50_ms"),
            med.get("fetch_p99_ms"),
            med.get("errors"),
            med.get("fallbacks"),
            "",
        ]
    )
    rows.append(["p99 over runs", None, None, _p99(all_booted), None, None, None, _p99(fetch_all), None, None, ""])
    if fallback_run is not None:
        rows.append(_storm_row("tm-a down", fallback_run))
    plot = Plot(
        title=f"Boot storm: {plan.terminals:,} terminals at once against a pair ({machine.get('nproc')} CPUs)",
        x_label="seconds from the storm's start",
        y_label="% of terminals holding their document",
        series=[Series(f"run {n}", r["cdf_s"], PERCENTS[: len(r["cdf_s"])], "-") for n, r in enumerate(runs, 1)]
        + (
            [Series("tm-a down (all from tm-b)", fallback_run["cdf_s"], PERCENTS, "--", "grey")]
            if fallback_run is not None and fallback_run["cdf_s"]
            else []
        ),
        vlines=[(TARGET_STORM_S, f"target: all booted within {TARGET_STORM_S:g} s")],
    )
    return BenchResult(
        name=STORM,
        title="Terminal boot storm: 5,000 terminals fetch their configuration at once from a pair",
        target=f"all {STORM_FULL.terminals:,} booted within {TARGET_STORM_S:g} s",
        measured=measured,
        passed=verdict,
        machine=machine,
        params={
            "terminals": plan.terminals,
            "runs": plan.runs,
            "groups": GROUPS,
            "client": "raw HTTP/1.1 on asyncio streams (uvloop), one new connection per terminal, all started "
            "together; tm-a first, tm-b on any error",
            "cache": "cold at the start of every run (a display-server change clears the document caches)",
            "server_env": SERVER_ENV,
            "server_runtime": runtime,
            "quick": quick,
        },
        table=Table(
            [
                "run",
                "booted",
                "failed",
                "all booted s",
                "boot p50 s",
                "boot p99 s",
                "fetch p50 ms",
                "fetch p99 ms",
                "failed fetches",
                "fallbacks",
                "CPU cores a / b / client",
            ],
            rows,
        ),
        plot=plot,
        notes=[
            "Boot time = from the storm's start until the terminal has its whole document; the storm is "
            "'all booted' when the last terminal has it. Fetch latency = one request, from opening the "
            "connection to the last byte (it includes waiting in the server's accept queue).",
            "Every run starts with cold document caches (resolution from SQLite for every terminal), the worst "
            "case after a configuration change; the document a terminal receives is checked to be its own.",
            "Failed fetches = attempts without a 200 and the terminal's own document (each then tries the next "
            "server). 'tm-a down': tm-a stopped, so every terminal's first attempt is refused (a failed fetch) "
            "and it boots from tm-b.",
            "The client and both servers share the machine's cores; CPU columns show who used them (cores "
            "busy over the run). Server CPU per boot (both servers' CPU time during the run / terminals, median "
            + _s(med.get("server_cpu_ms_per_boot"), 3)
            + " ms) moves far less with other load than the times do: one free core serves a storm in about "
            "terminals x that.",
            "tm-a's RSS right after each storm (every terminal on its own connection at once): "
            + ", ".join(_s((r.get("rss_mb") or {}).get("tm-a"), 0) for r in runs)
            + " MB (the steady-state memory target is measured by terminal_memory).",
            f"Other load on the machine: at start {machine.get('load_at_start')}, at end {machine.get('load_at_end')}.",
            f"Total benchmark time {elapsed:.0f} s" + (" (quick mode: fewer terminals, 1 run)" if quick else "") + ".",
        ],
        data={"runs": runs, "fallback_run": fallback_run},
    )


def _storm_row(label: str, r: dict[str, Any]) -> list[Any]:
    cpu = r.get("server_cpu") or {}
    return [
        label,
        r["booted"],
        r["failed"],
        r["all_booted_s"],
        r["boot_p50_s"],
        r["boot_p99_s"],
        r["fetch_p50_ms"],
        r["fetch_p99_ms"],
        r["errors"],
        r["fallbacks"],
        f"{_s(cpu.get('tm-a'))} / {_s(cpu.get('tm-b'))} / {_s(r.get('client_cpu'))}",
    ]


# ---------------------------------------------------------------------------- heartbeat ingest


@dataclass(frozen=True)
class HeartbeatPlan:
    terminals: int
    runs: int
    warmup_s: float
    duration_s: float
    connections: int


HEARTBEAT_FULL = HeartbeatPlan(terminals=10_000, runs=3, warmup_s=1.0, duration_s=5.0, connections=32)
HEARTBEAT_QUICK = HeartbeatPlan(terminals=1000, runs=1, warmup_s=0.5, duration_s=1.5, connections=16)


def heartbeat_body(i: int) -> bytes:
    return json.dumps({"state": "running", "booted_from": "http://127.0.0.1:2031", "uptime_s": 1000.0 + i}).encode()


async def first_touch(port: int, count: int, connections: int) -> dict[str, Any]:
    """One heartbeat per terminal (its first on this server: the MAC is looked up and its light made)."""
    queue = list(range(count))
    codes: dict[int, int] = {}
    began = time.perf_counter()

    async def worker() -> None:
        conn = Conn(port)
        try:
            while queue:
                i = queue.pop()
                try:
                    status, _ = await conn.request(b"POST", f"/terminal/v1/{bench_mac(i)}/status", heartbeat_body(i))
                except Failure:
                    status = 0
                codes[status] = codes.get(status, 0) + 1
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    wall = time.perf_counter() - began
    return {"count": count, "codes": codes, "seconds": wall, "rate": count / wall if wall else None}


async def ingest(
    port: int, count: int, connections: int, warmup_s: float, duration_s: float, rate: float | None
) -> dict[str, Any]:
    """Heartbeats for terminals 0..count-1 in turn. rate None: closed loop (each connection sends back
    to back); else open loop at `rate`/s with latency from each heartbeat's scheduled time."""
    start = time.perf_counter() + 0.05
    measure_from, measure_to = start + warmup_s, start + warmup_s + duration_s
    latencies: list[float] = []
    completions = 0
    errors: dict[str, int] = {}
    counter = 0

    async def send(conn: Conn, scheduled: float) -> None:
        nonlocal counter, completions
        i = counter % count
        counter += 1
        try:
            status, _ = await conn.request(b"POST", f"/terminal/v1/{bench_mac(i)}/status", heartbeat_body(i))
        except Failure as exc:
            status, kind = 0, str(exc)
        else:
            kind = f"http_{status}"
        done = time.perf_counter()
        if measure_from <= scheduled < measure_to:
            if status == 204:
                latencies.append((done - scheduled) * 1000.0)
            else:
                errors[kind] = errors.get(kind, 0) + 1
        if status == 204 and measure_from <= done < measure_to:
            completions += 1

    async def closed_worker() -> None:
        conn = Conn(port)
        try:
            while (now := time.perf_counter()) < measure_to:
                await send(conn, max(now, start))
        finally:
            await conn.close()

    async def open_loop() -> None:
        assert rate is not None
        pool: asyncio.Queue[Conn] = asyncio.Queue()
        for _ in range(connections):
            pool.put_nowait(Conn(port))
        total = int(rate * (warmup_s + duration_s))
        pending: set[asyncio.Task[None]] = set()

        async def one(scheduled: float) -> None:
            conn = await pool.get()
            try:
                await send(conn, scheduled)
            finally:
                pool.put_nowait(conn)

        for n in range(total):
            scheduled = start + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(scheduled))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        for task in pending:
            task.cancel()
        while not pool.empty():
            await pool.get_nowait().close()

    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    if rate is None:
        await asyncio.gather(*(closed_worker() for _ in range(connections)))
    else:
        await open_loop()
    wall = time.perf_counter() - wall0
    return {
        "mode": "closed" if rate is None else "open",
        "offered_rps": rate,
        "connections": connections,
        "achieved_rps": completions / duration_s,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else None,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "client_cpu": round((time.process_time() - cpu0) / wall, 3) if wall else None,
    }


def run_heartbeats(quick: bool = False, log: Log = print) -> BenchResult:
    plan = HEARTBEAT_QUICK if quick else HEARTBEAT_FULL
    machine = machine_info()
    runtime = server_runtime(server_python())
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    touches: dict[str, dict[str, Any]] = {}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="thinsync-bench-terminals-") as tmp:
        a, b = start_seeded_pair(Path(tmp), plan.terminals, log)
        with stopping(a, b, log=log):
            for server in (a, b):
                touches[server.name] = run_async(first_touch(server.port, plan.terminals, plan.connections))
                log(f"[{HEARTBEATS}] {server.name}: first heartbeat of every terminal {touches[server.name]}")
            for run_no in range(plan.runs):
                for server in (a, b):
                    steps = results.setdefault(server.name, {"closed": [], "open": []})
                    for mode, rate in (("closed", None), ("open", TARGET_HEARTBEATS_S)):
                        meter = CpuMeter({"server": server.pid})
                        meter.start()
                        r = run_async(
                            ingest(server.port, plan.terminals, plan.connections, plan.warmup_s, plan.duration_s, rate)
                        )
                        r["server_cpu"] = meter.stop()["server"]
                        steps[mode].append(r)
                        log(
                            f"[{HEARTBEATS}] run {run_no + 1} {server.name} {mode:6}: {r['achieved_rps']:7.0f}/s "
                            f"p50 {_s(r['p50_ms'], 1)} ms p99 {_s(r['p99_ms'], 1)} ms errors {r['errors']} "
                            f"{r['error_kinds'] or ''} cpu srv {r['server_cpu']} client {r['client_cpu']}"
                        )
                        if server.proc is not None and server.proc.poll() is not None:
                            raise RuntimeError(f"{server.name} died during the benchmark:\n{server.log_tail()}")
            rss = {s.name: rss_mb(s.pid) for s in (a, b)}
            lights = a.api("GET", "/api/v1/terminal-status", timeout=60).json()["items"]
            online = sum(1 for item in lights if item["status"] == "online")
    machine["load_at_end"] = load_now()
    return _heartbeat_result(plan, machine, runtime, results, touches, rss, online, time.monotonic() - began, quick)


def _heartbeat_result(
    plan: HeartbeatPlan,
    machine: dict[str, Any],
    runtime: dict[str, Any],
    results: dict[str, dict[str, list[dict[str, Any]]]],
    touches: dict[str, dict[str, Any]],
    rss: dict[str, float | None],
    online: int,
    elapsed: float,
    quick: bool,
) -> BenchResult:
    rows: list[list[Any]] = []
    verdicts: dict[str, dict[str, Any]] = {}
    for name, steps in results.items():
        for mode, runs in steps.items():
            achieved = [r["achieved_rps"] for r in runs]
            p99s = [r["p99_ms"] for r in runs if r["p99_ms"] is not None]
            rows.append(
                [
                    name,
                    f"{mode} loop" + ("" if mode == "closed" else f" {TARGET_HEARTBEATS_S:,.0f}/s"),
                    median(achieved),
                    min(achieved),
                    median([r["p50_ms"] for r in runs]),
                    median(p99s),
                    _p99(p99s),
                    sum(r["errors"] for r in runs),
                    median([r["server_cpu"] for r in runs]),
                    median([r["client_cpu"] for r in runs]),
                ]
            )
        closed = [r["achieved_rps"] for r in steps["closed"]]
        opened = steps["open"]
        carried = all(r["achieved_rps"] >= CARRIED_FRACTION * TARGET_HEARTBEATS_S and r["errors"] == 0 for r in opened)
        verdicts[name] = {
            "closed_median": median(closed),
            "closed_min": min(closed),
            "open_carried": carried,
            "open_p99_median": median([r["p99_ms"] for r in opened]),
            "passed": (median(closed) or 0) >= TARGET_HEARTBEATS_S and carried,
        }
    passed: bool | None = None if quick else all(v["passed"] for v in verdicts.values())
    measured = "; ".join(
        f"{name}: max {v['closed_median']:,.0f}/s median (min {v['closed_min']:,.0f}), "
        f"{TARGET_HEARTBEATS_S:,.0f}/s offered {'carried' if v['open_carried'] else 'NOT carried'} "
        f"with p99 {_s(v['open_p99_median'], 1)} ms"
        for name, v in verdicts.items()
    )
    plot = Plot(
        title=f"Heartbeat ingest per server, {plan.terminals:,} terminals ({machine.get('nproc')} CPUs)",
        x_label="run",
        y_label="heartbeats/s (closed loop)",
        series=[
            Series(
                name,
                [float(i) for i in range(1, len(steps["closed"]) + 1)],
                [r["achieved_rps"] for r in steps["closed"]],
            )
            for name, steps in results.items()
        ],
        hlines=[(TARGET_HEARTBEATS_S, f"target {TARGET_HEARTBEATS_S:,.0f}/s")],
    )
    return BenchResult(
        name=HEARTBEATS,
        title="Terminal heartbeat ingest per server (POST /terminal/v1/{mac}/status)",
        target=f"≥ {TARGET_HEARTBEATS_S:,.0f} heartbeats/s per server (10,000 terminals at the 5 s default)",
        measured=measured,
        passed=passed,
        machine=machine,
        params={
            "terminals": plan.terminals,
            "runs": plan.runs,
            "warmup_s": plan.warmup_s,
            "duration_s": plan.duration_s,
            "connections": plan.connections,
            "body": heartbeat_body(0).decode(),
            "server_env": SERVER_ENV,
            "server_runtime": runtime,
            "quick": quick,
        },
        table=Table(
            [
                "server",
                "step",
                "heartbeats/s (median)",
                "min",
                "p50 ms",
                "p99 ms (median)",
                "p99 ms (p99 over runs)",
                "errors",
                "CPU srv",
                "CPU client",
            ],
            rows,
        ),
        plot=plot,
        notes=[
            "Each heartbeat names another configured terminal (all of them in turn), so the per-terminal limit "
            "(5/s) never applies; the per-address limit is raised (THINSYNC_HEARTBEATS_PER_ADDRESS=1000000) "
            "because every virtual terminal sends from 127.0.0.1.",
            "Closed loop: each of the connections sends back to back (the maximum). Open loop: heartbeats "
            f"scheduled at {TARGET_HEARTBEATS_S:,.0f}/s, latency from the scheduled time (queueing counts).",
            "Before the runs every terminal sent its first heartbeat to each server (the light is created and "
            "the terminal looked up once): "
            + "; ".join(f"{n}: {t['rate']:,.0f}/s, answers {t['codes']}" for n, t in touches.items())
            + ".",
            f"After the runs: {online:,} terminals online on tm-a; RSS "
            + ", ".join(f"{n} {_s(v, 1)} MB" for n, v in rss.items())
            + ".",
            "The client and the server share the machine's cores; CPU columns show who used them (1.0 = one core).",
            f"Other load on the machine: at start {machine.get('load_at_start')}, at end {machine.get('load_at_end')}.",
            f"Total benchmark time {elapsed:.0f} s" + (" (quick mode)" if quick else "") + ".",
        ],
        data={"results": results, "first_touch": touches, "verdicts": verdicts, "rss_mb": rss},
    )


# ---------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryPlan:
    terminals: int
    runs: int


MEMORY_FULL = MemoryPlan(terminals=10_000, runs=3)
MEMORY_QUICK = MemoryPlan(terminals=1000, runs=1)


async def boot_and_beat(a_port: int, b_port: int, count: int, connections: int = 32) -> dict[str, Any]:
    """Every terminal fetches its configuration from tm-a once, then sends one heartbeat to each server."""
    queue = list(range(count))
    bad: dict[str, int] = {}

    async def worker() -> None:
        conns = {port: Conn(port) for port in (a_port, b_port)}
        try:
            while queue:
                i = queue.pop()
                mac = bench_mac(i)
                calls = [(a_port, b"GET", f"/terminal/v1/{mac}/config", b"", 200)]
                calls += [(p, b"POST", f"/terminal/v1/{mac}/status", heartbeat_body(i), 204) for p in (a_port, b_port)]
                for port, method, path, body, expected in calls:
                    try:
                        status, _ = await conns[port].request(method, path, body)
                    except Failure as exc:
                        status = 0
                        bad[str(exc)] = bad.get(str(exc), 0) + 1
                    if status != expected:
                        bad[f"http_{status}"] = bad.get(f"http_{status}", 0) + 1
        finally:
            for conn in conns.values():
                await conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return {"errors": sum(bad.values()), "error_kinds": bad}


def run_memory(quick: bool = False, log: Log = print) -> BenchResult:
    plan = MEMORY_QUICK if quick else MEMORY_FULL
    machine = machine_info()
    runtime = server_runtime(server_python())
    runs: list[dict[str, Any]] = []
    began = time.monotonic()
    for run_no in range(plan.runs):
        with tempfile.TemporaryDirectory(prefix="thinsync-bench-terminals-") as tmp:
            a, b = start_seeded_pair(Path(tmp), plan.terminals, log)
            with stopping(a, b, log=log):
                idle = {s.name: rss_mb(s.pid) for s in (a, b)}
                served = run_async(boot_and_beat(a.port, b.port, plan.terminals))
                time.sleep(1.0)  # let the servers finish the events and lights they queued
                after = {s.name: rss_mb(s.pid) for s in (a, b)}
                lights = b.api("GET", "/api/v1/terminal-status", timeout=60).json()["items"]
                online = sum(1 for item in lights if item["status"] == "online")
                result = {"idle_mb": idle, "served_mb": after, "online_on_b": online, **served}
                runs.append(result)
                log(f"[{MEMORY}] run {run_no + 1}: {result}")
    machine["load_at_end"] = load_now()
    return _memory_result(plan, machine, runtime, runs, time.monotonic() - began, quick)


def _memory_result(
    plan: MemoryPlan,
    machine: dict[str, Any],
    runtime: dict[str, Any],
    runs: list[dict[str, Any]],
    elapsed: float,
    quick: bool,
) -> BenchResult:
    worst = [max(v for v in r["served_mb"].values() if v is not None) for r in runs]
    complete = all(r["errors"] == 0 and r["online_on_b"] == plan.terminals for r in runs)
    passed: bool | None = None if quick else complete and all(w <= TARGET_RSS_MB for w in worst)
    rows = []
    for name in ("tm-a", "tm-b"):
        idle = [r["idle_mb"][name] for r in runs]
        served = [r["served_mb"][name] for r in runs]
        rows.append([name, median(idle), median(served), _p99(served), max(served)])
    measured = (
        f"tm-a {_s(rows[0][2], 1)} MB, tm-b {_s(rows[1][2], 1)} MB median RSS "
        f"(max {_s(max(worst), 1)} MB over {len(runs)} runs) with {plan.terminals:,} terminals served"
    )
    plot = Plot(
        title=f"Server RSS with {plan.terminals:,} terminals ({len(runs)} runs)",
        x_label="run",
        y_label="VmRSS (MB)",
        series=[
            Series(
                f"{name} after serving",
                [float(i) for i in range(1, len(runs) + 1)],
                [r["served_mb"][name] for r in runs],
            )
            for name in ("tm-a", "tm-b")
        ]
        + [
            Series(
                f"{name} idle", [float(i) for i in range(1, len(runs) + 1)], [r["idle_mb"][name] for r in runs], "s--"
            )
            for name in ("tm-a", "tm-b")
        ],
        hlines=[(TARGET_RSS_MB, f"target {TARGET_RSS_MB:g} MB")],
    )
    return BenchResult(
        name=MEMORY,
        title="Server memory with 10,000 terminals configured, served and heartbeating",
        target=f"RSS ≤ {TARGET_RSS_MB:g} MB per server with {MEMORY_FULL.terminals:,} terminals",
        measured=measured,
        passed=passed,
        machine=machine,
        params={"terminals": plan.terminals, "runs": plan.runs, "server_runtime": runtime, "quick": quick},
        table=Table(["server", "idle MB (median)", "served MB (median)", "served MB (p99)", "served MB (max)"], rows),
        plot=plot,
        notes=[
            "Each run is a fresh pair: 10,000 terminals committed into tm-a's store, tm-a and tm-b started and "
            "paired (tm-b receives them through the sync link).",
            "'idle' = VmRSS once the pair is in sync; 'served' = after every terminal fetched its configuration "
            "from tm-a once and sent one heartbeat to each server (both servers then hold a cached document "
            "and a status light per terminal), one second later.",
            f"Other load on the machine: at start {machine.get('load_at_start')}, at end {machine.get('load_at_end')}.",
            f"Total benchmark time {elapsed:.0f} s" + (" (quick mode)" if quick else "") + ".",
        ],
        data={"runs": runs},
    )


# ---------------------------------------------------------------------------- formatting


def _s(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _p99(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and v != float("inf")]
    return percentile(finite, 99) if finite else None
