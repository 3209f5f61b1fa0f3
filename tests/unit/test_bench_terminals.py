"""The terminal benchmarks' verdicts and reports, from synthetic runs (no servers): a missed target,
a failed terminal or a quick run is never reported as a pass, and the results write cleanly."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from bench import terminals as t
from bench.report import write_result

from thinsync.model.types import normalise_mac

MACHINE = {"nproc": 2, "python": "3.11", "load_at_start": {}, "load_at_end": {}}


def storm_run(all_booted: float | None, failed: int = 0, errors: int = 0) -> dict[str, Any]:
    booted = [all_booted * q / 100 for q in range(1, 101)] if all_booted is not None else []
    return {
        "terminals": 5000,
        "booted": 5000 - failed,
        "failed": failed,
        "fallbacks": 0,
        "errors": errors,
        "error_kinds": {"timeout": errors} if errors else {},
        "all_booted_s": all_booted if not failed else None,
        "wall_s": all_booted or 30.0,
        "boot_p50_s": booted[49] if booted else None,
        "boot_p99_s": booted[98] if booted else None,
        "fetch_p50_ms": 900.0,
        "fetch_p99_ms": 2000.0,
        "fetch_max_ms": 2100.0,
        "distinct_documents": 5000,
        "client_cpu": 0.1,
        "cdf_s": booted,
        "server_cpu": {"tm-a": 0.9, "tm-b": 0.0},
        "server_cpu_ms_per_boot": 0.4,
    }


def storm(runs: list[dict[str, Any]], quick: bool = False) -> Any:
    plan = t.STORM_QUICK if quick else t.STORM_FULL
    return t._storm_result(plan, dict(MACHINE), {}, runs, storm_run(3.0), 10.0, quick)


def test_storm_passes_only_when_every_run_boots_everyone_within_the_target(tmp_path: Path) -> None:
    good = storm([storm_run(2.0), storm_run(3.5), storm_run(4.9)])
    assert good.passed is True
    assert "3.50 s median" in good.measured
    assert storm([storm_run(2.0), storm_run(5.2), storm_run(3.0)]).passed is False  # one slow run
    assert storm([storm_run(2.0), storm_run(3.0, failed=1)]).passed is False  # one terminal never booted
    assert storm([storm_run(2.0)], quick=True).passed is None  # a quick run shows nothing
    paths = write_result(good, tmp_path)
    assert json.loads(paths["json"].read_text())["passed"] is True
    assert "all 5,000 booted within 5 s" in paths["md"].read_text()
    assert paths["png"].stat().st_size > 0


def heartbeat_step(rate: float, errors: int = 0, mode: str = "closed") -> dict[str, Any]:
    return {
        "mode": mode,
        "achieved_rps": rate,
        "p50_ms": 2.0,
        "p99_ms": 20.0,
        "errors": errors,
        "error_kinds": {},
        "server_cpu": 0.8,
        "client_cpu": 0.3,
    }


def heartbeats(closed: list[float], open_rate: float = 2000.0, open_errors: int = 0) -> Any:
    steps = {
        "closed": [heartbeat_step(r) for r in closed],
        "open": [heartbeat_step(open_rate, open_errors, "open") for _ in closed],
    }
    results = {"tm-a": steps, "tm-b": steps}
    touches = {name: {"rate": 1500.0, "codes": {204: 10000}} for name in results}
    return t._heartbeat_result(
        t.HEARTBEAT_FULL, dict(MACHINE), {}, results, touches, {"tm-a": 90.0, "tm-b": 95.0}, 10000, 5.0, False
    )


def test_heartbeats_pass_with_the_maximum_and_the_offered_rate_carried(tmp_path: Path) -> None:
    assert heartbeats([4000.0, 4200.0, 3900.0]).passed is True
    assert heartbeats([1800.0, 1900.0, 2500.0]).passed is False  # median below the target
    assert heartbeats([4000.0, 4000.0], open_rate=1700.0).passed is False  # the offer was not carried
    assert heartbeats([4000.0, 4000.0], open_errors=3).passed is False
    write_result(heartbeats([4000.0]), tmp_path)


def memory_run(a: float, b: float, online: int = 10_000, errors: int = 0) -> dict[str, Any]:
    return {
        "idle_mb": {"tm-a": 80.0, "tm-b": 85.0},
        "served_mb": {"tm-a": a, "tm-b": b},
        "online_on_b": online,
        "errors": errors,
    }


@pytest.mark.parametrize(
    ("runs", "passed"),
    [
        ([memory_run(100, 110), memory_run(101, 112)], True),
        ([memory_run(100, 151)], False),  # either server over the target
        ([memory_run(100, 110, online=9_999)], False),  # not every terminal was served
        ([memory_run(100, 110, errors=1)], False),
    ],
)
def test_memory_verdict(runs: list[dict[str, Any]], passed: bool, tmp_path: Path) -> None:
    result = t._memory_result(t.MEMORY_FULL, dict(MACHINE), {}, runs, 1.0, False)
    assert result.passed is passed
    write_result(result, tmp_path)


def test_plant_has_unique_valid_macs_and_every_terminal_in_a_group() -> None:
    ops = t.plant_ops(300)
    terminals = [op for op in ops if op.kind == "terminals"]
    assert len(terminals) == 300
    macs = [op.body["hardware"]["mac"] for op in terminals]
    assert len(set(macs)) == 300 and all(normalise_mac(m) == m for m in macs)
    groups = {op.name for op in ops if op.kind == "terminal-groups"}
    assert {op.body["group"] for op in terminals} == groups


def test_raw_client_reads_status_and_body_and_reports_failures() -> None:
    async def scenario() -> None:
        answers = [b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"]

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for answer in answers:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(answer)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = t.Conn(port, timeout=5)
        try:
            assert await conn.request(b"POST", "/x") == (204, b"")
            assert await conn.request(b"GET", "/y") == (200, b"hello")  # the same kept-alive connection
            with pytest.raises(t.Failure):
                await conn.request(b"GET", "/z")  # the server closed it: a failure, not a hang
        finally:
            await conn.close()
            server.close()
            await server.wait_closed()
        closed = t.Conn(port, timeout=5)
        with pytest.raises(t.Failure):
            await closed.request(b"GET", "/")  # nothing listens any more

    asyncio.run(scenario())
