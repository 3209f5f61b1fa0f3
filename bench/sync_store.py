"""Replication inside the store, in process (no HTTP, no link): bulk apply of change sets, snapshots.

* `sync_bulk_apply`: N single-object change sets committed on one Store (group commit), read back with
  `log_page` in pages of 500 as a peer's link would, and applied to a fresh Store with
  `apply_remote(page, max_skew_s=3600)` page by page; changes/s = change sets / wall time of the applies.
* `sync_snapshot`: a Store with N objects of four kinds (with references and unique MACs);
  `Store.snapshot()` -> the link's framing (JSON + HMAC in chunks of 2,000 objects, encoded and
  decoded) -> `merge_snapshot()` on a fresh Store. The pairing install path (`replace_all`) is timed too.

Both use real data dirs (WAL, synchronous=FULL) in a temporary directory.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import BenchResult, Plot, Series, Table, load_now, machine_info, median
from thinsync.clock import SystemClock
from thinsync.runtime import tune_gc
from thinsync.store import ChangeRequest, ChangeSet, Op, Store
from thinsync.sync import protocol as p
from thinsync.sync.link import SNAPSHOT_CHUNK

BULK = "sync_bulk_apply"
SNAPSHOT = "sync_snapshot"
TARGET_APPLY_PER_S = 20_000.0
TARGET_SNAPSHOT_S = 5.0
PAGE = 500
WRITE_WINDOW = 2_000  # commits in flight at once while building data (the writer groups up to 256)
Log = Callable[[str], Any]


def new_store(path: Path, name: str) -> Store:
    store = Store.open(path / "thinsync.db", SystemClock(), create=True)
    store.create_identity(name)
    return store


def display_server_op(name: str, i: int) -> Op:
    return Op("display-servers", name, "put", {"address": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"})


def mixed_op(i: int) -> Op:
    """Object i of a mixed configuration: 40% display servers, 20% display clients (each naming a display
    server), 30% terminals (unique MAC, a screen naming a display client), 10% users."""
    k = i % 10
    if k < 4:
        return display_server_op(f"ds-{i}", i)
    if k < 6:
        return Op("display-clients", f"dc-{i}", "put", {"display_servers": [f"ds-{i - k}"]})
    if k < 9:
        mac = "02:" + ":".join(f"{(i >> shift) & 255:02x}" for shift in (32, 24, 16, 8, 0))
        body = {"hardware": {"mac": mac}, "screens": [{"display_clients": [f"dc-{i - k + 4}"]}]}
        return Op("terminals", f"t-{i}", "put", body)
    return Op("users", f"u-{i}", "put", {"card_id": f"card-{i}"})


async def commit_all(store: Store, requests: list[ChangeRequest]) -> int:
    """Commit requests with a bounded number in flight (the writer groups them into transactions)."""
    done = 0
    for start in range(0, len(requests), WRITE_WINDOW):
        results = await asyncio.gather(*(store.commit(r) for r in requests[start : start + WRITE_WINDOW]))
        done += sum(1 for r in results if r.change is not None)
    return done


async def write_changes(store: Store, count: int, objects: int, prefix: str = "ds", offset: int = 0) -> int:
    """`count` single-object change sets over `objects` display servers (the first pass creates them)."""
    requests = [
        ChangeRequest("bench", "bench write", (display_server_op(f"{prefix}-{i % objects}", offset + i),))
        for i in range(count)
    ]
    return await commit_all(store, requests)


async def write_objects(store: Store, count: int, per_request: int = 500) -> int:
    requests = [
        ChangeRequest(
            "bench", "bench objects", tuple(mixed_op(i) for i in range(start, min(count, start + per_request)))
        )
        for start in range(0, count, per_request)
    ]
    await commit_all(store, requests)
    return count


def read_pages(store: Store, page: int = PAGE) -> list[list[ChangeSet]]:
    pages: list[list[ChangeSet]] = []
    cursor = 0
    while True:
        sets, cursor = store.log_page(cursor, {}, page)
        if not sets:
            return pages
        pages.append(sets)


# ---------------------------------------------------------------------------- bulk apply


@dataclass(frozen=True)
class BulkPlan:
    runs: int
    change_sets: int
    objects: int


BULK_FULL = BulkPlan(runs=3, change_sets=40_000, objects=10_000)
BULK_QUICK = BulkPlan(runs=1, change_sets=5_000, objects=1_250)


async def _bulk(plan: BulkPlan, root: Path, log: Log) -> dict[str, Any]:
    source = new_store(root / "source", "tm-a")
    try:
        began = time.perf_counter()
        written = await write_changes(source, plan.change_sets, plan.objects)
        build_s = time.perf_counter() - began
        began = time.perf_counter()
        pages = read_pages(source)
        read_s = time.perf_counter() - began
    finally:
        source.close()
    total = sum(len(page) for page in pages)
    if total != written:
        raise RuntimeError(f"the log holds {total} change sets, {written} were written")
    log(f"[{BULK}] built {written:,} change sets in {build_s:.1f} s; read {len(pages)} pages in {read_s:.2f} s")
    runs = []
    for run_no in range(plan.runs):
        target = new_store(root / f"target{run_no}", "tm-b")
        try:
            page_ms: list[float] = []
            cpu0 = time.process_time()
            began = time.perf_counter()
            applied = 0
            for page in pages:
                t0 = time.perf_counter()
                result = await target.apply_remote(page, max_skew_s=3600)
                page_ms.append((time.perf_counter() - t0) * 1000.0)
                applied += len([c for c in result.applied if c.origin == page[0].origin])
            wall = time.perf_counter() - began
            cpu = time.process_time() - cpu0
            vector = target.vector()
            if vector.get(pages[0][0].origin) != total:
                raise RuntimeError(f"apply left the vector at {vector}, expected {total} change sets")
        finally:
            target.close()
        run = {
            "wall_s": round(wall, 3),
            "per_s": round(total / wall, 1),
            "cpu_s": round(cpu, 3),
            "cpu_us_per_change": round(cpu * 1e6 / total, 1),
            "page_ms_p50": round(median(page_ms) or 0.0, 2),
            "page_ms_max": round(max(page_ms), 2),
            "applied": applied,
        }
        runs.append(run)
        log(
            f"[{BULK}] run {run_no + 1}: {total:,} change sets in {wall:.2f} s = {run['per_s']:,.0f}/s "
            f"(CPU {run['cpu_us_per_change']} µs per change, page p50 {run['page_ms_p50']} ms)"
        )
    return {"build_s": round(build_s, 2), "read_s": round(read_s, 3), "pages": len(pages), "total": total, "runs": runs}


def run_bulk(quick: bool = False, log: Log = print) -> BenchResult:
    plan = BULK_QUICK if quick else BULK_FULL
    machine = machine_info()
    tune_gc()  # the collector settings of a server process (thinsync.runtime)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="thinsync-bench-") as tmp:
        data = asyncio.run(_bulk(plan, Path(tmp), log))
    elapsed = time.monotonic() - began
    machine["load_at_end"] = load_now()
    runs = data["runs"]
    rate = median([r["per_s"] for r in runs]) or 0.0
    worst = min(r["per_s"] for r in runs)
    cpu_us = median([r["cpu_us_per_change"] for r in runs]) or 0.0
    with_read = data["total"] / (median([r["wall_s"] for r in runs]) + data["read_s"])
    rows = [
        [
            i + 1,
            data["total"],
            r["wall_s"],
            r["per_s"],
            r["cpu_us_per_change"],
            r["page_ms_p50"],
            r["page_ms_max"],
        ]
        for i, r in enumerate(runs)
    ]
    rows.append(["median", data["total"], median([r["wall_s"] for r in runs]), rate, None, None, None])
    plot = Plot(
        title=f"Bulk apply: {data['total']:,} change sets in pages of {PAGE}",
        x_label="run",
        y_label="change sets applied per second",
        series=[Series("apply_remote", [i + 1.0 for i in range(len(runs))], [r["per_s"] for r in runs], "o-")],
        hlines=[(TARGET_APPLY_PER_S, f"target {TARGET_APPLY_PER_S:,.0f}/s")],
    )
    return BenchResult(
        name=BULK,
        title="Bulk apply of replicated change sets (Store.apply_remote, in process)",
        target=f"≥ {TARGET_APPLY_PER_S:,.0f} changes/s",
        measured=f"{rate:,.0f} changes/s (median of {len(runs)} runs, slowest {worst:,.0f}/s; "
        f"{cpu_us:.0f} µs CPU per change = {1e6 / cpu_us if cpu_us else 0:,.0f}/s per CPU-second)",
        passed=rate >= TARGET_APPLY_PER_S,
        machine=machine,
        params={
            "runs": plan.runs,
            "change_sets": plan.change_sets,
            "objects": plan.objects,
            "page": PAGE,
            "max_skew_s": 3600,
            "quick": quick,
        },
        table=Table(["run", "change sets", "wall s", "changes/s", "CPU µs/change", "page p50 ms", "page max ms"], rows),
        plot=plot,
        notes=[
            f"{plan.change_sets:,} single-object change sets (PUT of a display server) over {plan.objects:,} objects "
            f"({plan.objects / plan.change_sets:.0%} create an object, the rest update one), committed on a source "
            "Store, read with `log_page(cursor, {}, 500)` and applied page by page to a fresh Store with "
            "`await store.apply_remote(page, max_skew_s=3600)` (one transaction and one fsync per page).",
            "changes/s = change sets / wall time of the applies (reading the pages is not included: "
            f"{data['read_s']:.2f} s for all pages; with it, {with_read:,.0f}/s).",
            "CPU µs/change is the benchmark process's CPU time (the writer thread does the work) per change set; "
            "1,000,000 / it is the rate one free core would reach, a number that moves less with other load on "
            "the machine than the wall-clock rate does.",
            f"Building the source log took {data['build_s']:.1f} s (not measured).",
            f"Other load on the machine: at start {machine.get('load_at_start')}, at end {machine.get('load_at_end')}.",
            f"Total benchmark time {elapsed:.0f} s" + (" (quick mode)" if quick else "") + ".",
        ],
        data={**data, "elapsed_s": round(elapsed, 1)},
    )


# ---------------------------------------------------------------------------- snapshots


@dataclass(frozen=True)
class SnapshotPlan:
    runs: int
    objects: int


SNAPSHOT_FULL = SnapshotPlan(runs=3, objects=100_000)
SNAPSHOT_QUICK = SnapshotPlan(runs=1, objects=20_000)


def wire(snap: dict[str, Any]) -> dict[str, Any]:
    """Send a snapshot through the link's framing (chunks of SNAPSHOT_CHUNK objects, JSON + HMAC) and
    decode it on the other side, as `Pusher._catch_up_snapshot` and the receiver do."""
    key = secrets.token_hex(32)
    sender, receiver = p.FrameCodec(key, "bench", "c"), p.FrameCodec(key, "bench", "s")
    objects = snap["objects"]
    parts = max(1, -(-len(objects) // SNAPSHOT_CHUNK))
    received: list[dict[str, Any]] = []
    vector: dict[str, int] = {}
    for part in range(parts):
        message: dict[str, Any] = {
            "t": "snapshot",
            "part": part,
            "parts": parts,
            "objects": objects[part * SNAPSHOT_CHUNK : (part + 1) * SNAPSHOT_CHUNK],
        }
        if part == parts - 1:
            message["vector"] = snap["vector"]
        decoded = receiver.decode(sender.encode(message))
        received.extend(decoded["objects"])
        vector = decoded.get("vector", vector)
    return {"objects": received, "vector": vector}


async def _snapshot(plan: SnapshotPlan, root: Path, log: Log) -> dict[str, Any]:
    source = new_store(root / "source", "tm-a")
    runs = []
    try:
        began = time.perf_counter()
        await write_objects(source, plan.objects)
        build_s = time.perf_counter() - began
        digest = source.digest().hex()
        log(f"[{SNAPSHOT}] built {plan.objects:,} objects in {build_s:.1f} s")
        for run_no in range(plan.runs):
            t0 = time.perf_counter()
            snap = source.snapshot(encoded=True)  # as the link sends it
            t1 = time.perf_counter()
            received = wire(snap)
            t2 = time.perf_counter()
            target = new_store(root / f"merge{run_no}", "tm-b")
            try:
                t3 = time.perf_counter()
                changed = await target.merge_snapshot(received)
                t4 = time.perf_counter()
                merged_digest = target.digest().hex()
            finally:
                target.close()
            install = new_store(root / f"install{run_no}", "tm-c")
            try:
                t5 = time.perf_counter()
                await install.replace_all(received)
                t6 = time.perf_counter()
                installed_digest = install.digest().hex()
            finally:
                install.close()
            if merged_digest != digest or installed_digest != digest or changed != plan.objects:
                raise RuntimeError("the merged or installed snapshot differs from the source")
            run = {
                "objects": len(snap["objects"]),
                "snapshot_s": round(t1 - t0, 3),
                "wire_s": round(t2 - t1, 3),
                "merge_s": round(t4 - t3, 3),
                "install_s": round(t6 - t5, 3),
                "total_s": round((t1 - t0) + (t2 - t1) + (t4 - t3), 3),
                "total_install_s": round((t1 - t0) + (t2 - t1) + (t6 - t5), 3),
            }
            runs.append(run)
            log(
                f"[{SNAPSHOT}] run {run_no + 1}: snapshot {run['snapshot_s']} s + wire {run['wire_s']} s + "
                f"merge {run['merge_s']} s = {run['total_s']} s (install path: replace_all {run['install_s']} s)"
            )
    finally:
        source.close()
    return {"build_s": round(build_s, 2), "runs": runs}


def run_snapshot(quick: bool = False, log: Log = print) -> BenchResult:
    plan = SNAPSHOT_QUICK if quick else SNAPSHOT_FULL
    machine = machine_info()
    tune_gc()  # the collector settings of a server process (thinsync.runtime)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="thinsync-bench-") as tmp:
        data = asyncio.run(_snapshot(plan, Path(tmp), log))
    elapsed = time.monotonic() - began
    machine["load_at_end"] = load_now()
    runs = data["runs"]
    keys = ("snapshot_s", "wire_s", "merge_s", "total_s", "install_s", "total_install_s")
    med = {k: median([r[k] for r in runs]) for k in keys}
    worst = max(r["total_s"] for r in runs)
    rows: list[list[Any]] = [[i + 1, *[r[k] for k in keys]] for i, r in enumerate(runs)]
    rows.append(["median", *[med[k] for k in keys]])
    xs = [i + 1.0 for i in range(len(runs))]
    plot = Plot(
        title=f"Snapshot of {plan.objects:,} objects: where the time goes",
        x_label="run",
        y_label="seconds",
        series=[
            Series("snapshot() read", xs, [r["snapshot_s"] for r in runs], "o-"),
            Series("link framing (encode + decode)", xs, [r["wire_s"] for r in runs], "o-"),
            Series("merge_snapshot()", xs, [r["merge_s"] for r in runs], "o-"),
            Series("total (snapshot + framing + merge)", xs, [r["total_s"] for r in runs], "s-"),
            Series("replace_all() (pairing install)", xs, [r["install_s"] for r in runs], "^--"),
        ],
        hlines=[(TARGET_SNAPSHOT_S, f"target {TARGET_SNAPSHOT_S:g} s")],
    )
    total = med["total_s"] or 0.0
    return BenchResult(
        name=SNAPSHOT,
        title=f"Snapshot of {plan.objects:,} objects: read, send, merge (in process)",
        target=f"snapshot of 100,000 objects ≤ {TARGET_SNAPSHOT_S:g} s",
        measured=f"{total:.2f} s for {plan.objects:,} objects (median of {len(runs)} runs, slowest {worst:.2f} s; "
        f"read {med['snapshot_s']:.2f} + framing {med['wire_s']:.2f} + merge {med['merge_s']:.2f} s)",
        passed=None if quick else total <= TARGET_SNAPSHOT_S,
        machine=machine,
        params={"runs": plan.runs, "objects": plan.objects, "chunk": SNAPSHOT_CHUNK, "quick": quick},
        table=Table(
            [
                "run",
                "snapshot() s",
                "framing s",
                "merge_snapshot() s",
                "total s",
                "replace_all() s",
                "total via install s",
            ],
            rows,
        ),
        plot=plot,
        notes=[
            f"{plan.objects:,} objects: 40% display servers, 20% display clients (each naming a display server), "
            "30% terminals (unique MAC, a screen naming a display client), 10% users; committed in change requests "
            f"of 500 objects (building took {data['build_s']:.1f} s, not measured).",
            "total = `Store.snapshot()` (one read transaction) + the link's framing of the snapshot (JSON + "
            f"HMAC-SHA256 in chunks of {SNAPSHOT_CHUNK:,} objects, encoded and decoded; no socket) + "
            "`merge_snapshot()` into a fresh Store (per-field merge, reference/unique indexes, validity, one "
            "transaction and fsync). The merged and the installed copies are checked against the source digest.",
            "`replace_all()` is the pairing install path (the secondary drops its configuration and installs the "
            "primary's snapshot); shown for comparison.",
            "In process, one Python process: the real link runs the sender and the receiver on two servers "
            "(two cores), so framing costs would partly overlap there.",
            f"Other load on the machine: at start {machine.get('load_at_start')}, at end {machine.get('load_at_end')}.",
            f"Total benchmark time {elapsed:.0f} s"
            + (" (quick mode: 20,000 objects, not the target size)" if quick else "")
            + ".",
        ],
        data={**data, "median": med, "elapsed_s": round(elapsed, 1)},
    )
