"""Small statistics and process helpers shared by the synchronization benchmarks."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from bench.loadgen import percentile, proc_cpu_seconds
from bench.report import median

__all__ = ["distribution", "over_runs", "percentile", "proc_cpu_seconds", "median", "CpuMeter"]


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


def over_runs(runs: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    """Median, min and max of one number across runs (None entries ignored)."""
    values = [r.get(key) for r in runs]
    present = [v for v in values if v is not None]
    return {
        "median": median(present),
        "min": min(present) if present else None,
        "max": max(present) if present else None,
        "runs": len(values),
    }


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
