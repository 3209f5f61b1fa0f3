"""The synchronization benchmarks' shared pieces: the change-stream decoder, statistics, result writers."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from bench import report, sync_live, sync_recovery
from bench.changestream import ChunkedSSE, item_names
from bench.stats import distribution

from thinsync.clock import SystemClock
from thinsync.store import ChangeRequest, Op, Store


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def event(n: int, name: str) -> bytes:
    body = {"id": n, "items": [{"kind": "display-servers", "name": name, "version": "v"}]}
    return f"id: {n}\ndata: {json.dumps(body)}\n\n".encode()


def test_chunked_sse_decodes_events_split_anywhere() -> None:
    raw = (
        chunk(b": connected\n\n")
        + chunk(event(1, "a"))
        + chunk(event(2, "b") + event(3, "c"))
        + chunk(b": keepalive\n\n")
    )
    for step in (1, 3, 7, len(raw)):
        decoder = ChunkedSSE()
        payloads: list[bytes] = []
        for start in range(0, len(raw), step):
            payloads += decoder.feed(raw[start : start + step])
        assert [item_names(p) for p in payloads] == [["a"], ["b"], ["c"]], step
        assert not decoder.overflowed and not decoder.ended


def test_chunked_sse_reports_overflow_and_end() -> None:
    decoder = ChunkedSSE()
    assert decoder.feed(chunk(b"event: overflow\ndata: {}\n\n") + b"0\r\n\r\n") == [b"{}"]
    assert decoder.overflowed and decoder.ended


def test_chunked_sse_refuses_a_runaway_buffer() -> None:
    decoder = ChunkedSSE()
    with pytest.raises(ValueError):
        decoder.feed(b"1" * (17 * 1024 * 1024))


def test_distribution_counts_missing_samples_as_infinitely_late() -> None:
    values = [float(v) for v in range(1, 101)]
    full = distribution(values)
    assert (full["p50"], full["p99"], full["max"], full["n"]) == (50.0, 99.0, 100.0, 100)
    lossy = distribution(values, missing=5)
    assert lossy["p99"] is None and lossy["max"] is None and lossy["missing"] == 5
    assert distribution([])["p50"] is None


def _latency_run(p50: float, p99: float) -> dict[str, object]:
    dist = {"n": 100, "missing": 0, "p50": p50, "p90": p99 / 2, "p99": p99, "max": p99 * 2, "min": 0.5}
    return {
        "acked": 100,
        "missing_on_peer": 0,
        "replication_ms": dist,
        "put_to_2xx_ms": dist,
        "2xx_to_peer_stream_ms": dist,
        "put_to_own_stream_ms": dist,
        "curve_ms": [p50, p50, p99 / 2, p99 / 2, p99, p99 * 2],
        "server_cpu": {"a": 0.1, "b": 0.1},
    }


def test_latency_result_from_synthetic_runs(tmp_path: Path) -> None:
    runs = [_latency_run(1.5, 8.0), _latency_run(1.8, 30.0), _latency_run(1.6, 9.0)]
    result = sync_live._latency_result(
        sync_live.LATENCY_QUICK, report.machine_info(), runs, 1.0, True, {}, {"p50": 1.0, "p99": 5.0}
    )
    assert result.passed is True  # medians: p50 1.6 ms, p99 9 ms
    paths = report.write_result(result, tmp_path)
    assert json.loads(paths["json"].read_text())["name"] == sync_live.LATENCY
    assert paths["png"].read_bytes().startswith(b"\x89PNG")


def test_throughput_result_needs_the_target_rate_carried_with_low_lag(tmp_path: Path) -> None:
    def step(offered: float, achieved: float, lag_p99: float | None) -> dict[str, object]:
        lag = {"n": 50, "missing": 0 if lag_p99 else 3, "p50": 5.0, "p90": 9.0, "p99": lag_p99, "max": lag_p99}
        return {
            "offered_rps": offered,
            "achieved_rps": achieved,
            "errors": 0,
            "lag_ms": lag,
            "write_p99_ms": 20.0,
            "converge_s": 0.2,
            "server_cpu": {"a": 0.5, "b": 0.5},
        }

    plan = sync_live.ThroughputPlan(runs=2, warmup_s=0.1, duration_s=0.1, combined_rates=(500.0, 1000.0))
    good = {500.0: [step(500, 500, 20.0)] * 2, 1000.0: [step(1000, 990, 60.0), step(1000, 995, 80.0)]}
    result = sync_live._throughput_result(plan, report.machine_info(), good, 1.0, True, {})
    assert result.passed is True
    lost = {500.0: [step(500, 500, 20.0)] * 2, 1000.0: [step(1000, 990, None)] * 2}
    result = sync_live._throughput_result(plan, report.machine_info(), lost, 1.0, True, {})
    assert result.passed is False  # probes that never arrived are infinitely late
    assert (
        json.loads(report.write_result(result, tmp_path)["json"].read_text())["data"]["steps"][1]["lag_p99_ms"] is None
    )


def test_plant_edit_changes_values_but_not_stamps(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "thinsync.db", SystemClock(), create=True)
    try:
        store.create_identity("tm-a")
        store.commit_sync(ChangeRequest("t", "t", (Op("display-servers", "ds1", "put", {"address": "10.0.0.1"}),)))
        before = store.get("display-servers", "ds1")
        digest = store.digest().hex()
        planted = sync_recovery.plant_edit(tmp_path / "thinsync.db", "display-servers", "ds1", "192.0.2.1")
        after = store.get("display-servers", "ds1")
        assert planted["before"] == "10.0.0.1" and after.vals["address"] == "192.0.2.1"
        assert dict(after.stamps) == dict(before.stamps) and store.digest().hex() != digest
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "thinsync.db") as conn:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
