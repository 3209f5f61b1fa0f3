"""Small statistics and process helpers shared by the synchronization benchmarks."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.loadgen import percentile, proc_cpu_seconds
from bench.report import median

__all__ = ["distribution", "fsync_probe", "percentile", "proc_cpu_seconds", "median", "CpuMeter"]


def distribution(values: Sequence[float], missing: int = 0) -> dict[str, Any]:
    """p50/p90/p99/max of `values` (ms or s); `missing` samples never arrived and count as +infinity,
    so they push the high percentiles up instead of vanishing (None where they decide the value)."""
    present = sorted(values)
    pool: list[float] = present + [math.inf] * missing
    out: dict[str, Any] = {"n": len(present), "missing": missing}
    for name, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        value = percentile(pool, q)
        out[name] = None if value is None or math.isinf(value) else round(value, 3)
    out["max"] = None if missing or not present else round(present[-1], 3)
    out["min"] = round(present[0], 3) if present else None
    return out


class CpuMeter:
    """CPU cores used by some processes between start() and stop() (1.0 = one core busy)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._t0 = 0.0
        self._cpu0: dict[str, float | None] = {}

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._cpu0 = {name: proc_cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float | None]:
        wall = time.perf_counter() - self._t0
        out: dict[str, float | None] = {}
        for name, pid in self.pids.items():
            before, after = self._cpu0.get(name), proc_cpu_seconds(pid)
            out[name] = round((after - before) / wall, 3) if before is not None and after is not None and wall else None
        return out


def fsync_probe(directory: Path, count: int = 100) -> dict[str, Any]:
    """How long this disk takes to make a small overwrite durable (fdatasync, ms): every commit of the
    servers (synchronous=FULL) waits for one, so it bounds write and replication latency."""
    path = directory / ".fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"\0" * 4096 * 16)
        os.fsync(fd)
        times = []
        for i in range(count):
            os.pwrite(fd, i.to_bytes(4, "big") * 1024, (i % 16) * 4096)
            began = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - began) * 1000.0)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return distribution(times)
