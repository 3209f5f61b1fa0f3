"""Recovery with real servers: catch-up after downtime, partition heal, out-of-band repair, kill -9 restart.

* `sync_catchup`: tm-a and tm-b paired, both stopped; N change sets committed in process into tm-a's
  data dir; tm-a started, then tm-b (already paired); time from tm-b's exec until its version vector
  equals tm-a's (read from the database files) and until both report in_sync with equal digests.
* `sync_partition_heal`: the servers reach each other only through TCP fault proxies; partition,
  write on both sides (some objects on both: conflicts), heal, time until in_sync with equal digests.
* `sync_repair`: an out-of-band edit (a value changed in the `objects` table, stamps untouched) planted
  in tm-b's SQLite file, (1) while tm-b is stopped, found when it starts, (2) while it runs, found by
  the periodic digest check (THINSYNC_DIGEST_INTERVAL_S=10); time until the event log shows the repair
  and the digests match.
* `restart_kill9`: a server with 10,000 objects killed with SIGKILL while it takes writes; time from
  exec of the new process until /healthz answers 200 and the ready file appears.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import RawConn, TransportFailure
from bench.report import BenchResult, Plot, Series, Table, load_now, machine_info, median
from bench.servers import ServerUnderTest, in_sync, start_pair, stopping, vectors_equal, wait_until
from bench.stats import proc_cpu_seconds
from bench.sync_store import write_changes, write_objects
from thinsync.clock import SystemClock
from thinsync.store import Store

CATCHUP = "sync_catchup"
PARTITION = "sync_partition_heal"
REPAIR = "sync_repair"
RESTART = "restart_kill9"
TARGET_CATCHUP_S = 5.0
TARGET_HEAL_S = 3.0
TARGET_REPAIR_S = 60.0
TARGET_RESTART_S = 2.0
Log = Callable[[str], Any]


def _conn(server: ServerUnderTest) -> RawConn:
    headers = (
        f"Host: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {server.token()}\r\nContent-Type: application/json\r\n"
    ).encode()
    return RawConn("127.0.0.1", server.port, headers, timeout=10.0)


def _address(i: int) -> bytes:
    return json.dumps({"address": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"}).encode()


async def _write_for(server: ServerUnderTest, names: Callable[[int], str], rate: float, seconds: float) -> int:
    """Open loop at `rate` for `seconds` over 4 connections; returns how many got a 2xx."""
    conns = [_conn(server) for _ in range(4)]
    ok = 0
    free: asyncio.Queue[RawConn] = asyncio.Queue()
    for conn in conns:
        free.put_nowait(conn)

    async def one(i: int) -> None:
        nonlocal ok
        conn = await free.get()
        try:
            status = await conn.put(f"/api/v1/display-servers/{names(i)}", _address(i))
            ok += 200 <= status < 300
        except TransportFailure:
            pass
        finally:
            free.put_nowait(conn)

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    if tasks:
        await asyncio.wait(tasks, timeout=15)
    for conn in conns:
        await conn.close()
    return ok


def _in_process(db: Path, job: Callable[[Store], Any]) -> Any:
    """Run an async job on the Store of a stopped server's data dir (it takes a new incarnation, as a
    server start does)."""

    async def go() -> Any:
        store = Store.open(db, SystemClock())
        try:
            return await job(store)
        finally:
            store.close()

    return asyncio.run(go())


def _notes_tail(machine: dict[str, Any], elapsed: float, quick: bool) -> list[str]:
    return [
        f"Other load on the machine: at start {machine.get('load_at_start')}, at end {machine.get('load_at_end')}.",
        f"Total benchmark time {elapsed:.0f} s" + (" (quick mode)" if quick else "") + ".",
    ]


def _s(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------------------- catch-up


@dataclass(frozen=True)
class CatchupPlan:
    runs: int
    changes: int  # the target size, measured `runs` times
    objects: int
    scale: tuple[int, ...]  # larger sizes, one run each, to show how the cost grows
    budget_s: float  # a larger size is skipped when it would end the benchmark after this


CATCHUP_FULL = CatchupPlan(runs=3, changes=100_000, objects=10_000, scale=(1_000_000,), budget_s=900.0)
CATCHUP_QUICK = CatchupPlan(runs=1, changes=20_000, objects=5_000, scale=(), budget_s=120.0)
CATCHUP_TIMEOUT_S = 240.0


def _copy_dir(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def _catchup_once(a: ServerUnderTest, b: ServerUnderTest, size: int, log: Log) -> dict[str, Any]:
    """Both stopped, tm-a holding `size` change sets tm-b lacks: start tm-a, then time tm-b catching up."""
    with stopping(a, b, log=log):
        a.start()
        b.spawn()
        t0 = b.exec_at
        b.wait_ready()
        ready_s = b.ready_at - t0
        first: float | None = None
        before = b.vector_on_disk()
        cpu0 = {"a": proc_cpu_seconds(a.pid), "b": proc_cpu_seconds(b.pid)}
        deadline = time.monotonic() + CATCHUP_TIMEOUT_S
        while True:
            now = time.perf_counter()
            if first is None and b.vector_on_disk() != before:
                first = now
            if vectors_equal(a, b):
                vectors_s = time.perf_counter() - t0
                cpu1 = {"a": proc_cpu_seconds(a.pid), "b": proc_cpu_seconds(b.pid)}
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"tm-b did not catch up {size:,} changes in {CATCHUP_TIMEOUT_S:.0f} s")
            time.sleep(0.02)
        # in_sync needs the links' digest comparison; status computes a digest per call, so poll gently.
        wait_until(lambda: in_sync(a, b), 120, 0.25, what="in sync after catch-up")
        sync_s = time.perf_counter() - t0
    return {
        "changes": size,
        "b_ready_s": round(ready_s, 3),
        "first_change_s": round(first - t0, 3) if first else None,
        "vectors_equal_s": round(vectors_s, 3),
        "in_sync_s": round(sync_s, 3),
        # The catch-up itself: from tm-b serving again until it holds every change tm-a holds.
        "catch_up_s": round(vectors_s - ready_s, 3),
        "apply_rate_per_s": round(size / (vectors_s - (first - t0)), 1) if first and vectors_s > first - t0 else None,
        # CPU each server spent from tm-b's ready file to equal vectors, per change (start-up excluded).
        "cpu_us_per_change": {
            k: round((cpu1[k] - cpu0[k]) * 1e6 / size, 1) if cpu0[k] is not None and cpu1[k] is not None else None
            for k in ("a", "b")
        },
    }


def run_catchup(quick: bool = False, log: Log = print) -> BenchResult:
    plan = CATCHUP_QUICK if quick else CATCHUP_FULL
    machine = machine_info()
    began = time.monotonic()
    runs: list[dict[str, Any]] = []
    scaled: list[dict[str, Any]] = []
    skipped: list[int] = []
    builds: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="thinsync-bench-") as tmp:
        root = Path(tmp)
        a, b = ServerUnderTest(root, name="tm-a"), ServerUnderTest(root, name="tm-b")
        with stopping(a, b, log=log):
            start_pair(a, b)
        log(f"[{CATCHUP}] paired and stopped; building logs in process")
        # The log grows in a copy of tm-a's data dir; every run starts from copies of both dirs.
        base_a, base_b = root / "base-a", root / "base-b"
        _copy_dir(a.data, base_a)
        _copy_dir(b.data, base_b)
        written = 0
        last: tuple[int, float] | None = None  # (size, seconds to equal vectors) of the last size measured
        for size in (plan.changes, *plan.scale):
            if last is not None:
                per_change = sum(builds.values()) / written
                predicted = per_change * (size - written) + last[1] * size / last[0] + 30.0
                if time.monotonic() - began + predicted > plan.budget_s:
                    skipped.append(size)
                    log(f"[{CATCHUP}] skipping {size:,}: about {predicted:.0f} s more would pass the time budget")
                    continue
            t0 = time.perf_counter()
            count, offset = size - written, written
            _in_process(
                base_a / "thinsync.db",
                lambda store, c=count, o=offset: write_changes(store, c, plan.objects, "cu", o),
            )
            written = size
            builds[size] = round(time.perf_counter() - t0, 1)
            log(f"[{CATCHUP}] tm-a holds {size:,} change sets tm-b lacks (built in {builds[size]} s)")
            for run_no in range(plan.runs if size == plan.changes else 1):
                _copy_dir(base_a, a.data)
                _copy_dir(base_b, b.data)
                result = _catchup_once(a, b, size, log)
                (runs if size == plan.changes else scaled).append(result)
                last = (size, result["vectors_equal_s"])
                log(
                    f"[{CATCHUP}] {size:,} changes, run {run_no + 1}: tm-b ready {result['b_ready_s']} s, first change "
                    f"{result['first_change_s']} s, vectors equal {result['vectors_equal_s']} s, in sync "
                    f"{result['in_sync_s']} s after exec ({result['apply_rate_per_s']} changes/s; CPU µs per change "
                    f"{result['cpu_us_per_change']})"
                )
    elapsed = time.monotonic() - began
    machine["load_at_end"] = load_now()
    keys = ("b_ready_s", "first_change_s", "vectors_equal_s", "in_sync_s", "catch_up_s", "apply_rate_per_s")
    for r in runs + scaled:
        r["cpu_a_us"], r["cpu_b_us"] = r["cpu_us_per_change"]["a"], r["cpu_us_per_change"]["b"]
    keys += ("cpu_a_us", "cpu_b_us")
    med = {k: median([r[k] for r in runs]) for k in keys}
    worst = {k: max((r[k] for r in runs if r[k] is not None), default=None) for k in keys}
    rows: list[list[Any]] = [[f"{r['changes']:,}", i + 1, *[r[k] for k in keys]] for i, r in enumerate(runs)]
    rows.append([f"{plan.changes:,}", "median", *[med[k] for k in keys]])
    rows.append([f"{plan.changes:,}", "max", *[worst[k] for k in keys]])
    rows += [[f"{r['changes']:,}", "1 (scale)", *[r[k] for k in keys]] for r in scaled]
    points = [(plan.changes, med["vectors_equal_s"], med["in_sync_s"], med["catch_up_s"])] + [
        (r["changes"], r["vectors_equal_s"], r["in_sync_s"], r["catch_up_s"]) for r in scaled
    ]
    plot = Plot(
        title="Catch-up of a server that was down: time from its exec",
        x_label="change sets it lacked",
        y_label="seconds from tm-b's exec",
        series=[
            Series("tm-b serving -> all changes applied", [float(p[0]) for p in points], [p[3] for p in points], "^-"),
            Series("exec -> vectors equal", [float(p[0]) for p in points], [p[1] for p in points], "o-"),
            Series(
                "exec -> both in_sync (digests compared)", [float(p[0]) for p in points], [p[2] for p in points], "s--"
            ),
        ],
        hlines=[(TARGET_CATCHUP_S, f"target {TARGET_CATCHUP_S:g} s for 100,000")],
    )
    total = med["catch_up_s"]
    passed = None if quick else (total is not None and total <= TARGET_CATCHUP_S)
    per_100k = [
        f"{r['changes']:,}: {r['catch_up_s']:.1f} s (in sync {r['in_sync_s']:.1f} s after exec)" for r in scaled
    ]
    return BenchResult(
        name=CATCHUP,
        title=f"Catch-up of {plan.changes:,} changes after downtime (two servers)",
        target=f"catch-up of 100,000 changes ≤ {TARGET_CATCHUP_S:g} s",
        measured=f"{_s(total)} s from tm-b serving to all {plan.changes:,} changes applied (median of {len(runs)} "
        f"runs, max {_s(worst['catch_up_s'])} s; from tm-b's exec: ready {_s(med['b_ready_s'])} s, vectors equal "
        f"{_s(med['vectors_equal_s'])} s, both in_sync with digests compared {_s(med['in_sync_s'])} s; tm-b "
        f"{_s(med['cpu_b_us'], 0)} µs CPU per change)" + (f"; {', '.join(per_100k)}" if per_100k else ""),
        passed=passed,
        machine=machine,
        params={
            "runs": plan.runs,
            "changes": plan.changes,
            "objects": plan.objects,
            "scale": list(plan.scale),
            "quick": quick,
        },
        table=Table(
            [
                "changes",
                "run",
                "tm-b ready s",
                "first change s",
                "vectors equal s",
                "in sync s",
                "serving -> applied s",
                "changes/s while applying",
                "CPU µs/change tm-a",
                "CPU µs/change tm-b",
            ],
            rows,
        ),
        plot=plot,
        notes=[
            "Setup: tm-a and tm-b paired (redundant), then both stopped (SIGTERM). The change sets are committed in "
            f"process into tm-a's data dir (single-object PUTs of display servers over {plan.objects:,} objects: one "
            "change set each, the same write path as the API); tm-a and tm-b's data dirs are copied, and every run "
            "starts from the copies.",
            "Verdict: the catch-up is timed from tm-b serving again (its ready file) until its version vector "
            "equals tm-a's, i.e. it holds and has applied every change it lacked. Process start-up before that "
            "and the digest comparison after it are shown in the other columns (the partition-heal benchmark "
            "is the one that times identical digests).",
            "Each run: tm-a started and ready, then tm-b exec'd; times are from tm-b's exec. 'first change' = tm-b's "
            "version vector (read from its database file) first moved; 'vectors equal' = tm-b's vector equals tm-a's; "
            "'in sync' = both report in_sync (links up, nothing queued, digests compared equal) with equal digests.",
            "tm-a's link to tm-b retries about once a second while tm-b is down, and at once when tm-b's own link "
            "connects to tm-a; tm-b's start (Python imports, opening the store) is included.",
            "changes/s while applying = changes / (vectors equal - first change). CPU µs/change = CPU time each "
            "server process used from tm-b's ready file until equal vectors, per change: tm-b (the receiver: decode, "
            "apply in pages of 2,000; pages waiting together share one transaction) is the bottleneck; 1,000,000 / "
            "its number is the rate a free core would give, whatever else ran on the machine.",
            (
                f"Larger logs ({', '.join(f'{x:,}' for x in plan.scale)}) run once each to show how the cost grows."
                + (f" Skipped to stay in the time budget: {', '.join(f'{x:,}' for x in skipped)}." if skipped else "")
            )
            if plan.scale
            else "Quick mode: a small log only (no verdict).",
            f"Building the logs (not measured), seconds per increment up to each size: {builds}.",
            *_notes_tail(machine, elapsed, quick),
        ],
        data={
            "runs": runs,
            "scale": scaled,
            "skipped": skipped,
            "median": med,
            "max": worst,
            "build_s": builds,
            "elapsed_s": round(elapsed, 1),
        },
    )


# ---------------------------------------------------------------------------- partition heal


@dataclass(frozen=True)
class PartitionPlan:
    runs: int
    write_s: float
    rate: float  # writes/s on each side during the partition
    shared_every: int  # every n-th write on each side goes to an object both sides write


PARTITION_FULL = PartitionPlan(runs=5, write_s=3.0, rate=100.0, shared_every=20)
PARTITION_QUICK = PartitionPlan(runs=1, write_s=1.0, rate=100.0, shared_every=20)


def _down(server: ServerUnderTest) -> bool:
    return all(not p["connected"] for p in server.status()["peers"])


def run_partition(quick: bool = False, log: Log = print) -> BenchResult:
    from tests.helpers.proxy import FaultProxy

    plan = PARTITION_QUICK if quick else PARTITION_FULL
    machine = machine_info()
    began = time.monotonic()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="thinsync-bench-") as tmp:
        a, b = ServerUnderTest(Path(tmp), name="tm-a"), ServerUnderTest(Path(tmp), name="tm-b")
        proxies: list[FaultProxy] = []
        with stopping(a, b, log=log):
            try:

                def ports() -> dict[str, int]:
                    proxies.extend([FaultProxy(a.port), FaultProxy(b.port)])
                    return {a.name: proxies[0].port, b.name: proxies[1].port}

                start_pair(a, b, ports=ports)
                for run_no in range(plan.runs):
                    for proxy in proxies:
                        proxy.partition()
                    wait_until(lambda: _down(a) and _down(b), 15, 0.05, what="both links down")

                    async def both(tag: str = f"p{run_no}") -> list[int]:
                        def names(side: str) -> Callable[[int], str]:
                            return lambda i: (
                                f"{tag}-shared-{i // plan.shared_every}"
                                if i % plan.shared_every == 0
                                else f"{tag}-{side}-{i}"
                            )

                        return list(
                            await asyncio.gather(
                                _write_for(a, names("a"), plan.rate, plan.write_s),
                                _write_for(b, names("b"), plan.rate, plan.write_s),
                            )
                        )

                    written = asyncio.run(both())
                    vectors = (a.vector_on_disk(), b.vector_on_disk())
                    behind = sum(max(0, vectors[0].get(o, 0) - vectors[1].get(o, 0)) for o in vectors[0]) + sum(
                        max(0, vectors[1].get(o, 0) - vectors[0].get(o, 0)) for o in vectors[1]
                    )
                    t0 = time.perf_counter()
                    for proxy in proxies:
                        proxy.heal()
                    first_link: float | None = None
                    deadline = time.monotonic() + 60
                    while True:
                        if first_link is None and vectors_equal(a, b):
                            first_link = time.perf_counter() - t0
                        if in_sync(a, b):
                            break
                        if time.monotonic() > deadline:
                            raise TimeoutError("not in sync 60 s after the heal")
                        time.sleep(0.02)
                    heal_s = time.perf_counter() - t0
                    conflicts = a.status()["conflicts_open"]
                    run = {
                        "written": written,
                        "missing_across": behind,
                        "vectors_equal_s": round(first_link, 3) if first_link is not None else None,
                        "heal_s": round(heal_s, 3),
                        "conflicts_open": conflicts,
                    }
                    runs.append(run)
                    log(
                        f"[{PARTITION}] run {run_no + 1}: wrote {written} during the partition "
                        f"({behind} change sets to exchange); vectors equal {run['vectors_equal_s']} s, in sync "
                        f"with equal digests {run['heal_s']} s after the heal; open conflicts {conflicts}"
                    )
            finally:
                for proxy in proxies:
                    proxy.close()
    elapsed = time.monotonic() - began
    machine["load_at_end"] = load_now()
    heal = [r["heal_s"] for r in runs]
    med = median(heal)
    rows: list[list[Any]] = [
        [i + 1, f"{r['written'][0]} + {r['written'][1]}", r["missing_across"], r["vectors_equal_s"], r["heal_s"]]
        for i, r in enumerate(runs)
    ]
    rows.append(
        ["median", "", median([r["missing_across"] for r in runs]), median([r["vectors_equal_s"] for r in runs]), med]
    )
    plot = Plot(
        title="Partition heal: time from heal to in_sync with equal digests",
        x_label="run",
        y_label="seconds after the heal",
        series=[
            Series("vectors equal", [i + 1.0 for i in range(len(runs))], [r["vectors_equal_s"] for r in runs], "o-"),
            Series("in_sync, equal digests", [i + 1.0 for i in range(len(runs))], heal, "s-"),
        ],
        hlines=[(TARGET_HEAL_S, f"target {TARGET_HEAL_S:g} s")],
    )
    return BenchResult(
        name=PARTITION,
        title="Partition heal: both sides written during a partition, time to identical digests",
        target=f"identical digests ≤ {TARGET_HEAL_S:g} s after the heal",
        measured=f"{_s(med)} s (median of {len(runs)} runs, max {_s(max(heal) if heal else None)} s)",
        passed=None if quick else (med is not None and med <= TARGET_HEAL_S),
        machine=machine,
        params={
            "runs": plan.runs,
            "write_s": plan.write_s,
            "rate_per_side": plan.rate,
            "shared_every": plan.shared_every,
            "quick": quick,
        },
        table=Table(["run", "writes a + b", "change sets to exchange", "vectors equal s", "in sync s"], rows),
        plot=plot,
        notes=[
            "tm-a and tm-b reach each other only through a TCP fault proxy in front of each (tests/helpers/proxy.py); "
            "the benchmark talks to the servers directly.",
            f"Each run: partition (connections cut, new ones refused) until both links are down; {plan.rate:.0f} "
            f"writes/s on each side for {plan.write_s:g} s (every {plan.shared_every}th write goes to an object both "
            "sides write, so conflicts are recorded too); heal; time until both servers report in_sync and their "
            "digests are equal (status polled every 20 ms).",
            "The links retry about once a second while the peer is unreachable, so up to ~1 s is the retry interval.",
            f"Open conflicts after the last run: {runs[-1]['conflicts_open'] if runs else '—'}.",
            *_notes_tail(machine, elapsed, quick),
        ],
        data={"runs": runs, "elapsed_s": round(elapsed, 1)},
    )


# ---------------------------------------------------------------------------- out-of-band repair


@dataclass(frozen=True)
class RepairPlan:
    runs: int
    objects: int
    digest_interval_s: float = 10.0


REPAIR_FULL = RepairPlan(runs=3, objects=200)
REPAIR_QUICK = RepairPlan(runs=1, objects=50)
REPAIR_TIMEOUT_S = 90.0
# After tm-b's restart, tm-a's link reconnects within about a second and compares digests at once; wait
# that out so the periodic comparison is what finds the edit made while running.
SETTLE_S = 3.0


def _linked(a: ServerUnderTest, b: ServerUnderTest) -> bool:
    return all(p["connected"] and p["inbound_connected"] for s in (a, b) for p in s.status()["peers"])


def plant_edit(db: Path, kind: str, name: str, value: str) -> dict[str, Any]:
    """Change one field of an object's `vals` in the SQLite file without touching its stamps."""
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute("SELECT vals, stamps FROM objects WHERE kind=? AND name=?", (kind, name)).fetchone()
        if row is None:
            raise RuntimeError(f"no {kind}/{name} in {db}")
        vals = json.loads(row[0])
        before = vals.get("address")
        vals["address"] = value
        conn.execute(
            "UPDATE objects SET vals=? WHERE kind=? AND name=?",
            (json.dumps(vals, separators=(",", ":"), sort_keys=True, ensure_ascii=False), kind, name),
        )
        conn.execute("COMMIT")
        return {"before": before, "planted": value, "stamps": json.loads(row[1])}
    finally:
        conn.close()


def _last_event(server: ServerUnderTest) -> int:
    items = server.api("GET", "/api/v1/events", params={"category": "sync", "limit": 1}).json()["items"]
    return int(items[0]["id"]) if items else 0


def _events_after(server: ServerUnderTest, after: int) -> list[dict[str, Any]]:
    return server.api("GET", "/api/v1/events", params={"category": "sync", "after": after, "limit": 1000}).json()[
        "items"
    ]


def _watch_repair(
    a: ServerUnderTest, b: ServerUnderTest, marks: dict[str, int], t0: float, name: str
) -> dict[str, Any]:
    """Poll both event logs (category sync, after `marks`) and statuses until the repair is done."""
    found_s = repaired_s = None
    alarm = False
    messages: list[str] = []
    deadline = time.monotonic() + REPAIR_TIMEOUT_S
    while True:
        now = time.perf_counter() - t0
        if repaired_s is None:
            events = sorted((e for s in (a, b) for e in _events_after(s, marks[s.name])), key=lambda e: e["time"])
            for event in events:
                text = event["message"]
                if "out-of-band" in text and name in text:
                    alarm = True
                if found_s is None and ("digest differs" in text or ("out-of-band" in text and name in text)):
                    found_s = now
                if repaired_s is None and found_s is not None and text.startswith("repaired"):
                    repaired_s = now
            messages = [e["message"] for e in events]
        if repaired_s is not None and in_sync(a, b):
            equal_s = time.perf_counter() - t0
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the planted edit was not repaired within {REPAIR_TIMEOUT_S:.0f} s: {messages}")
        time.sleep(0.05)
    values = {s.name: s.api("GET", f"/api/v1/display-servers/{name}").json()["address"] for s in (a, b)}
    return {
        "found_s": round(found_s, 3) if found_s is not None else None,
        "repaired_s": round(repaired_s, 3),
        "digests_equal_s": round(equal_s, 3),
        "alarm": alarm,
        "values_after": values,
        "events": messages[-6:],
    }


def run_repair(quick: bool = False, log: Log = print) -> BenchResult:
    plan = REPAIR_QUICK if quick else REPAIR_FULL
    machine = machine_info()
    began = time.monotonic()
    runs: list[dict[str, Any]] = []
    env = {"THINSYNC_DIGEST_INTERVAL_S": f"{plan.digest_interval_s:g}"}
    with tempfile.TemporaryDirectory(prefix="thinsync-bench-") as tmp:
        a = ServerUnderTest(Path(tmp), name="tm-a", env=env)
        b = ServerUnderTest(Path(tmp), name="tm-b", env=env)
        with stopping(a, b, log=log):
            start_pair(a, b)
            asyncio.run(_write_for(a, lambda i: f"oob-{i}", 200.0, plan.objects / 200.0))
            wait_until(lambda: in_sync(a, b), 60, 0.1, what="in sync after the writes")
            for run_no in range(plan.runs):
                for mode in ("stopped", "running"):
                    name = f"oob-{run_no * 2 + (mode == 'running')}"
                    marks = {s.name: _last_event(s) for s in (a, b)}
                    if mode == "stopped":
                        b.stop()
                        planted = plant_edit(b.db_path, "display-servers", name, f"192.0.2.{run_no * 2 + 1}")
                        b.spawn()
                        t0 = b.exec_at
                        b.wait_ready()
                    else:
                        # Let the links settle after the restart, so the periodic check (not the check after
                        # catch-up) is what finds this one.
                        wait_until(lambda: in_sync(a, b) and _linked(a, b), 60, 0.1, what="in sync before planting")
                        time.sleep(SETTLE_S)
                        t0 = time.perf_counter()
                        planted = plant_edit(b.db_path, "display-servers", name, f"192.0.2.{run_no * 2 + 2}")
                    result = {"mode": mode, "object": f"display-servers/{name}", **planted}
                    result.update(_watch_repair(a, b, marks, t0, name))
                    runs.append(result)
                    log(
                        f"[{REPAIR}] run {run_no + 1} ({mode}): found {result['found_s']} s, repaired "
                        f"{result['repaired_s']} s, digests equal {result['digests_equal_s']} s after "
                        f"{'tm-b exec' if mode == 'stopped' else 'the edit'}; values {result['values_after']}"
                    )
    elapsed = time.monotonic() - began
    machine["load_at_end"] = load_now()
    by_mode = {m: [r for r in runs if r["mode"] == m] for m in ("stopped", "running")}
    rows: list[list[Any]] = []
    for mode, label in (
        ("stopped", "planted while tm-b was stopped (from its exec)"),
        ("running", "planted while tm-b ran (from the edit)"),
    ):
        for r in by_mode[mode]:
            rows.append(
                [
                    label,
                    r["found_s"],
                    r["repaired_s"],
                    r["digests_equal_s"],
                    "yes" if len(set(r["values_after"].values())) == 1 else "NO",
                    "yes" if r["planted"] in r["values_after"].values() else "no",
                    "yes" if r["alarm"] else "NO",
                ]
            )
    worst = max((r["digests_equal_s"] for r in runs), default=None)
    med = {m: median([r["digests_equal_s"] for r in rs]) for m, rs in by_mode.items()}
    plot = Plot(
        title="Out-of-band edit: time until repaired and digests equal",
        x_label="run",
        y_label="seconds",
        series=[
            Series(f"{m}: digests equal", [i + 1.0 for i in range(len(rs))], [r["digests_equal_s"] for r in rs], "o-")
            for m, rs in by_mode.items()
        ]
        + [
            Series(f"{m}: found", [i + 1.0 for i in range(len(rs))], [r["found_s"] for r in rs], "x:")
            for m, rs in by_mode.items()
        ],
        hlines=[(TARGET_REPAIR_S, f"target {TARGET_REPAIR_S:g} s"), (plan.digest_interval_s, "digest interval")],
    )
    return BenchResult(
        name=REPAIR,
        title="Out-of-band edit found and repaired (digest comparison)",
        target=f"found and repaired ≤ {TARGET_REPAIR_S:g} s",
        measured=f"stopped-then-started: {_s(med['stopped'])} s, edited while running: {_s(med['running'])} s "
        f"(medians of {plan.runs} runs each; worst {_s(worst)} s)",
        passed=None if quick else (worst is not None and worst <= TARGET_REPAIR_S),
        machine=machine,
        params={
            "runs": plan.runs,
            "objects": plan.objects,
            "digest_interval_s": plan.digest_interval_s,
            "quick": quick,
        },
        table=Table(
            [
                "case",
                "found s",
                "repaired s",
                "digests equal s",
                "same value on both",
                "planted value kept",
                "out-of-band alarm",
            ],
            rows,
        ),
        plot=plot,
        notes=[
            f"tm-a and tm-b paired with THINSYNC_DIGEST_INTERVAL_S={plan.digest_interval_s:g}, {plan.objects} display "
            "servers written. The edit: one object's `address` changed in the `objects` table's `vals` JSON of "
            "tm-b's SQLite file (sqlite3 on the file), stamps untouched.",
            "'stopped': tm-b stopped, edited, started; times from tm-b's exec (the links compare digests after "
            "catch-up). 'running': edited while tm-b runs (both links up and settled for "
            f"{SETTLE_S:g} s first); found by the periodic digest comparison, times from the edit, so they fall "
            f"anywhere in 0-{plan.digest_interval_s:g} s plus the comparison.",
            "'found' = the first event (category sync, either server) saying the digests differ or naming the object "
            "as an out-of-band edit; 'repaired' = the 'repaired N buckets' event after it; 'digests equal' = both "
            "servers in_sync with equal digests. Equal stamps with different values are settled by value hash, so "
            "either value may be kept ('planted value kept').",
            "'out-of-band alarm' = an event names the object as an out-of-band edit (DESIGN §4: 'settled by body "
            "hash and raise an alarm').",
            *_notes_tail(machine, elapsed, quick),
        ],
        data={"runs": runs, "elapsed_s": round(elapsed, 1)},
    )


# ---------------------------------------------------------------------------- restart after kill -9


@dataclass(frozen=True)
class RestartPlan:
    runs: int
    objects: int


RESTART_FULL = RestartPlan(runs=5, objects=10_000)
RESTART_QUICK = RestartPlan(runs=1, objects=2_000)
RESTART_TIMEOUT_S = 30.0


def _healthz(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def run_restart(quick: bool = False, log: Log = print) -> BenchResult:
    plan = RESTART_QUICK if quick else RESTART_FULL
    machine = machine_info()
    began = time.monotonic()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="thinsync-bench-") as tmp:
        server = ServerUnderTest(Path(tmp), name="tm-a")
        with stopping(server, log=log):
            server.init()
            _in_process(server.db_path, lambda store: write_objects(store, plan.objects))
            server.start()
            log(f"[{RESTART}] {plan.objects:,} objects; pid {server.pid} on port {server.port}")
            for run_no in range(plan.runs):

                async def load_then_kill(n: int = run_no) -> int:
                    writes = asyncio.create_task(_write_for(server, lambda i: f"k{n}-{i % 100}", 300.0, 3.0))
                    await asyncio.sleep(1.0)
                    server.kill()  # SIGKILL by PID, mid-load
                    return await writes

                acked = asyncio.run(load_then_kill())
                port = server.port
                server.spawn(port=port)
                t0 = server.exec_at
                health = ready = None
                deadline = time.monotonic() + RESTART_TIMEOUT_S
                while health is None or ready is None:
                    if ready is None and server.ready.exists():
                        ready = time.perf_counter() - t0
                    if health is None and _healthz(port):
                        health = time.perf_counter() - t0
                    if not server.running:
                        raise RuntimeError(f"the server exited after kill -9:\n{server.log_tail()}")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"not serving {RESTART_TIMEOUT_S:.0f} s after kill -9")
                    time.sleep(0.005)
                server.wait_ready()
                objects = server.api("GET", "/api/v1/display-servers", params={"limit": 1}).status_code
                run = {
                    "healthz_s": round(health, 3),
                    "ready_file_s": round(ready, 3),
                    "serving_s": round(max(health, ready), 3),
                    "writes_acked_before_kill": acked,
                    "api_after": objects,
                }
                runs.append(run)
                log(
                    f"[{RESTART}] run {run_no + 1}: killed during writes; /healthz 200 after {run['healthz_s']} s, "
                    f"ready file after {run['ready_file_s']} s"
                )
    elapsed = time.monotonic() - began
    machine["load_at_end"] = load_now()
    serving = [r["serving_s"] for r in runs]
    med = median(serving)
    rows: list[list[Any]] = [[i + 1, r["healthz_s"], r["ready_file_s"], r["serving_s"]] for i, r in enumerate(runs)]
    rows.append(["median", median([r["healthz_s"] for r in runs]), median([r["ready_file_s"] for r in runs]), med])
    plot = Plot(
        title=f"Restart after kill -9 ({plan.objects:,} objects): time from exec",
        x_label="run",
        y_label="seconds from exec",
        series=[
            Series("/healthz 200", [i + 1.0 for i in range(len(runs))], [r["healthz_s"] for r in runs], "o-"),
            Series("ready file", [i + 1.0 for i in range(len(runs))], [r["ready_file_s"] for r in runs], "s--"),
        ],
        hlines=[(TARGET_RESTART_S, f"target {TARGET_RESTART_S:g} s")],
    )
    return BenchResult(
        name=RESTART,
        title="Restart after kill -9: serving again",
        target=f"serving ≤ {TARGET_RESTART_S:g} s after restart",
        measured=f"{_s(med)} s to /healthz 200 and the ready file (median of {len(runs)} runs, max "
        f"{_s(max(serving) if serving else None)} s)",
        passed=None if quick else (med is not None and med <= TARGET_RESTART_S),
        machine=machine,
        params={"runs": plan.runs, "objects": plan.objects, "quick": quick},
        table=Table(["run", "/healthz 200 s", "ready file s", "serving s"], rows),
        plot=plot,
        notes=[
            f"One server with {plan.objects:,} objects (four kinds, with references), written in process before it "
            "started. Each run: 300 writes/s over the API, SIGKILL by PID one second in, then the same command line "
            "exec'd again on the same port; /healthz polled every ~5 ms and the ready file checked in the same loop.",
            "serving = the later of the two. The time includes starting Python and importing the server, opening "
            "the database (WAL recovery after the kill, quick_check) and starting the services.",
            *_notes_tail(machine, elapsed, quick),
        ],
        data={"runs": runs, "elapsed_s": round(elapsed, 1)},
    )
