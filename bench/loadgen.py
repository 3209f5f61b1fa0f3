"""HTTP write load generator, run as its own process: `python -m bench.loadgen --url ... --token ...`.

Two modes, both with a fixed set of connections (one worker per connection, like wrk2):

* ``open``: requests are *scheduled* at a fixed offered rate, whatever the server does, into a
  queue the workers drain. Latency is measured from the scheduled send time, so a server that
  stalls is charged for the requests that queued behind the stall (no coordinated omission).
* ``closed``: each worker sends back to back; latency is measured from the actual send. This
  finds the maximum throughput.

Two client engines: ``httpx2`` (`httpx2.AsyncClient`, explicit Limits and Timeout) and ``raw``
(a minimal keep-alive HTTP/1.1 client on asyncio streams, a fraction of the CPU per request, for
when the generator itself would be the bottleneck on a small machine).

Every loop is bounded in count and time. The result (summary, optionally raw latencies) is
written as JSON to ``--out`` (or stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx2

# After the schedule ends, queued requests get this long to be sent and answered; the rest are
# counted as failures (an overloaded step then ends in bounded time).
DRAIN_TIMEOUT_S = 2.0
MAX_RATE = 20_000
MAX_CONNECTIONS = 512


class TransportFailure(Exception):
    """A request that got no HTTP response (connection error, timeout, malformed response)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Conn(Protocol):
    async def put(self, path: str, body: bytes) -> int: ...

    async def close(self) -> None: ...


class HttpxConn:
    """All workers share one AsyncClient whose pool has exactly one connection per worker."""

    def __init__(self, client: httpx2.AsyncClient) -> None:
        self.client = client

    async def put(self, path: str, body: bytes) -> int:
        try:
            response = await self.client.put(path, content=body)
        except httpx2.TimeoutException as exc:
            raise TransportFailure("timeout") from exc
        except httpx2.HTTPError as exc:
            raise TransportFailure(type(exc).__name__) from exc
        return response.status_code

    async def close(self) -> None:
        return None


class RawConn:
    """One keep-alive HTTP/1.1 connection; reconnects after any failure."""

    def __init__(self, host: str, port: int, headers: bytes, timeout: float) -> None:
        self.host, self.port, self.headers, self.timeout = host, port, headers, timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def put(self, path: str, body: bytes) -> int:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._put(path, body)
        except TimeoutError as exc:
            await self.close()
            raise TransportFailure("timeout") from exc
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            await self.close()
            raise TransportFailure(type(exc).__name__) from exc

    async def _put(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = b"PUT %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (path.encode(), self.headers, len(body))
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise ValueError("chunked responses are not supported by the raw client")
        if length is None:
            raise ValueError("response without Content-Length")
        await self.reader.readexactly(length)
        if close:
            await self.close()
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


@dataclass
class Recorder:
    measuring_from: float
    measuring_until: float
    # (scheduled, sent, done, status) for each measured request; status 0 = no response.
    samples: list[tuple[float, float, float, int]] = field(default_factory=list)
    # Completion times of every successful request, warm-up included: throughput is what the
    # server completed inside the window, whichever request it was working on.
    completions: list[float] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def body_for(counter: int) -> bytes:
    """A display server body whose address changes every request, so every PUT is a real change."""
    address = f"10.{(counter >> 16) & 255}.{(counter >> 8) & 255}.{counter & 255}"
    return json.dumps({"address": address}).encode()


def proc_cpu_seconds(pid: int) -> float | None:
    """utime+stime of a process (all its threads) from /proc, or None when unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def send_one(conn: Conn, args: argparse.Namespace, counter: int, scheduled: float, rec: Recorder) -> None:
    path = f"/api/v1/{args.kind}/{args.prefix}-{counter % args.objects}"
    sent = time.perf_counter()
    status = 0
    measured = rec.measuring_from <= scheduled < rec.measuring_until
    try:
        status = await conn.put(path, body_for(counter))
    except TransportFailure as exc:
        if measured:
            rec.error(exc.kind)
    done = time.perf_counter()
    if 200 <= status < 300:
        rec.completions.append(done)
    if measured:
        if status >= 400:
            rec.error(f"http_{status}")
        rec.samples.append((scheduled, sent, done, status))


async def run_open(conns: list[Conn], args: argparse.Namespace, rec: Recorder, start: float) -> dict[str, Any]:
    """Schedule request i at start + i/rate into a queue; one worker per connection drains it."""
    rate = float(args.rate)
    total = int(rate * (args.warmup + args.duration))
    queue: collections.deque[tuple[int, float]] = collections.deque()
    wakeup = asyncio.Event()
    finished = False

    async def worker(conn: Conn) -> None:
        while True:
            if not queue:
                if finished:
                    return
                wakeup.clear()
                await wakeup.wait()
                continue
            counter, scheduled = queue.popleft()
            await send_one(conn, args, counter, scheduled, rec)

    workers = [asyncio.create_task(worker(c)) for c in conns]
    i = 0
    while i < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1) if now >= start else 0
        if due > i:
            queue.extend((n, start + n / rate) for n in range(i, due))
            i = due
            wakeup.set()
        if i < total:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
    finished = True
    wakeup.set()
    _done, pending = await asyncio.wait(workers, timeout=DRAIN_TIMEOUT_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    # Requests never sent before the drain deadline are failures, not silently dropped.
    unsent = sum(1 for _, scheduled in queue if rec.measuring_from <= scheduled < rec.measuring_until)
    if unsent:
        rec.error_kinds["not_sent_before_deadline"] = unsent
    if pending:
        rec.error_kinds["in_flight_at_deadline"] = len(pending)
    return {"unsent": unsent}


async def run_closed(conns: list[Conn], args: argparse.Namespace, rec: Recorder, start: float) -> dict[str, Any]:
    """Each worker sends back to back until the time is up (and at most `max_requests` in all)."""
    counter = 0

    async def worker(conn: Conn) -> None:
        nonlocal counter
        while counter < args.max_requests:
            now = time.perf_counter()
            if now >= rec.measuring_until:
                return
            n = counter
            counter += 1
            await send_one(conn, args, n, now, rec)

    workers = [asyncio.create_task(worker(c)) for c in conns]
    _done, pending = await asyncio.wait(workers, timeout=args.warmup + args.duration + DRAIN_TIMEOUT_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if pending:
        rec.error_kinds["in_flight_at_deadline"] = len(pending)
    return {"unsent": 0}


def summarise(rec: Recorder, args: argparse.Namespace) -> dict[str, Any]:
    """Throughput = successful responses completed inside the window / window length."""
    ok = [s for s in rec.samples if 200 <= s[3] < 300]
    window = rec.measuring_until - rec.measuring_from
    completed = sum(1 for done in rec.completions if rec.measuring_from <= done < rec.measuring_until)
    # Open loop: a request's latency runs from its scheduled time; closed loop: scheduled == sent.
    latencies = [(done - scheduled) * 1000.0 for scheduled, _sent, done, _ in ok]
    service = [(done - sent) * 1000.0 for _scheduled, sent, done, _ in ok]
    return {
        "mode": args.mode,
        "engine": args.engine,
        "offered_rps": args.rate if args.mode == "open" else None,
        "connections": args.connections,
        "window_s": round(window, 3),
        "measured_requests": len(rec.samples) + rec.error_kinds.get("not_sent_before_deadline", 0),
        "ok": len(ok),
        "errors": sum(rec.error_kinds.values()),
        "error_kinds": rec.error_kinds,
        "achieved_rps": completed / window if window > 0 else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else None,
        "service_p50_ms": percentile(service, 50),
        "service_p99_ms": percentile(service, 99),
    }


def make_conns(args: argparse.Namespace) -> tuple[list[Conn], httpx2.AsyncClient | None]:
    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
    if args.engine == "httpx2":
        limits = httpx2.Limits(
            max_connections=args.connections, max_keepalive_connections=args.connections, keepalive_expiry=30.0
        )
        timeout = httpx2.Timeout(args.timeout, connect=5.0, pool=args.timeout)
        client = httpx2.AsyncClient(base_url=args.url, headers=headers, limits=limits, timeout=timeout, trust_env=False)
        return [HttpxConn(client) for _ in range(args.connections)], client
    url = urlsplit(args.url)
    host = url.hostname or "127.0.0.1"
    port = url.port or 80
    raw_headers = f"Host: {host}:{port}\r\n".encode() + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
    return [RawConn(host, port, raw_headers, args.timeout) for _ in range(args.connections)], None


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    conns, client = make_conns(args)
    try:
        wall0 = time.perf_counter()
        cpu0 = time.process_time()
        server0 = proc_cpu_seconds(args.server_pid) if args.server_pid else None
        start = wall0 + 0.05
        rec = Recorder(start + args.warmup, start + args.warmup + args.duration)
        if args.mode == "open":
            await run_open(conns, args, rec, start)
        else:
            await run_closed(conns, args, rec, start)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        server1 = proc_cpu_seconds(args.server_pid) if args.server_pid else None
    finally:
        for conn in conns:
            await conn.close()
        if client is not None:
            await client.aclose()
    result = summarise(rec, args)
    # CPU shares over the whole run (1.0 = one core busy) tell whether the generator or the
    # server was the limit; on a 2-core machine their sum near 2.0 means the machine was.
    result["loadgen_cpu"] = round(cpu / wall, 3) if wall > 0 else None
    result["server_cpu"] = round((server1 - server0) / wall, 3) if server0 is not None and server1 is not None else None
    # CPU per successful write over the whole run: less sensitive to other load on the machine
    # than throughput is, so it is the number to compare between runs and builds.
    completed_all = len(rec.completions)
    if server0 is not None and server1 is not None and completed_all:
        result["server_cpu_ms_per_write"] = round((server1 - server0) * 1000.0 / completed_all, 4)
    if completed_all:
        result["loadgen_cpu_ms_per_write"] = round(cpu * 1000.0 / completed_all, 4)
    if args.raw:
        result["raw_latencies_ms"] = [round((s[2] - s[0]) * 1000.0, 3) for s in rec.samples]
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--token", help="bearer token (or --token-file, which keeps it out of `ps`)")
    p.add_argument("--token-file")
    p.add_argument("--mode", choices=["open", "closed"], default="open")
    p.add_argument("--engine", choices=["httpx2", "raw"], default="httpx2")
    p.add_argument("--rate", type=float, default=500.0, help="offered requests per second (open loop)")
    p.add_argument("--connections", type=int, default=32, help="connections = workers")
    p.add_argument("--duration", type=float, default=6.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.5, help="seconds sent but not measured")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
    p.add_argument("--max-requests", type=int, default=500_000, help="closed-loop request cap")
    p.add_argument("--kind", default="display-servers")
    p.add_argument("--prefix", default="bench")
    p.add_argument("--objects", type=int, default=1000, help="distinct object names written in turn")
    p.add_argument("--server-pid", type=int, default=0, help="sample this process's CPU time")
    p.add_argument("--raw", action="store_true", help="include every measured request's latency")
    p.add_argument("--out", help="write the JSON result here instead of stdout")
    args = p.parse_args(argv)
    if args.token_file:
        args.token = Path(args.token_file).read_text(encoding="utf-8").strip()
    if not args.token:
        p.error("give --token or --token-file")
    if not 0 < args.rate <= MAX_RATE:
        p.error(f"--rate must be in (0, {MAX_RATE}]")
    if not 0 < args.duration <= 120 or not 0 <= args.warmup <= 30:
        p.error("--duration must be in (0, 120] and --warmup in [0, 30]")
    if not 1 <= args.connections <= MAX_CONNECTIONS:
        p.error(f"--connections must be in [1, {MAX_CONNECTIONS}]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(main_async(args))
    text = json.dumps(result)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
