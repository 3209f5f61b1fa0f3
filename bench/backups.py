"""Backup and restore of 10,000 terminals on a pair of real servers (`backup_restore`).

Setup: tm-a and tm-b paired (redundant) and stopped; 10,000 terminals (unique MACs) committed in
process into tm-a's data dir through `Store.commit` (the one write path, batches of 1,000 ops);
both started again and tm-b catches up. Not measured.

* Backup: `POST /api/v1/backups` on tm-a, timed from the request to the 201 (the whole file is
  written and fsynced by then). Several runs; median and p99.
* Restore: three backups are cycled through, each a whole-configuration change of 10,000 objects:
  X (the terminals as built), Y (every terminal's description changed) and E (no terminals). Y and E
  are written with the open format (`thinsync.backup.archive.encode`) from X's content into tm-a's
  backup directory. Each restore is `POST /api/v1/restore {"backup_id"}` on tm-a: verify the whole file,
  write the pre-restore backup, apply one change set of 10,000 items; it replicates to tm-b. Timed:
  the 200 answer on tm-a; until tm-b is identical (its version vector equals tm-a's: it applied the
  change set); and until both status digests are compared equal (checked on every run).
  Target: backup ≤ 2 s; restore until tm-b is identical ≤ 5 s.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import percentile
from bench.report import BenchResult, Plot, Series, Table, load_now, machine_info, median
from bench.servers import ServerUnderTest, start_pair, stopping, vectors_equal, wait_until
from thinsync.backup import archive
from thinsync.clock import SystemClock
from thinsync.store import ChangeRequest, Op, Store

NAME = "backup_restore"
TARGET_BACKUP_S = 2.0
TARGET_RESTORE_S = 5.0
BATCH = 1000
Log = Callable[[str], Any]


@dataclass(frozen=True)
class Plan:
    terminals: int
    backup_runs: int
    restore_cycles: int  # each cycle restores Y, E and X once


FULL = Plan(terminals=10_000, backup_runs=7, restore_cycles=3)
QUICK = Plan(terminals=2_000, backup_runs=2, restore_cycles=1)


def _mac(i: int) -> str:
    return "02:" + ":".join(f"{(i >> shift) & 255:02x}" for shift in (32, 24, 16, 8, 0))


def _build(db: Path, count: int) -> None:
    """Commit `count` terminals into a stopped server's data dir (the same write path as the API)."""

    async def go() -> None:
        store = Store.open(db, SystemClock())
        try:
            for start in range(0, count, BATCH):
                ops = tuple(
                    Op(
                        "terminals",
                        f"T{i:05d}",
                        "put",
                        {"hardware": {"mac": _mac(i)}, "description": f"terminal {i}"},
                    )
                    for i in range(start, min(count, start + BATCH))
                )
                await store.commit(ChangeRequest("bench", f"bench terminals {start}", ops))
        finally:
            store.close()

    asyncio.run(go())


def _variant(source: Path, target: Path, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    """Write another backup file from `source`'s content changed by `change` (manifest made to match)."""
    document = json.loads(gzip.decompress(source.read_bytes()))
    objects = change(document["objects"])
    counts: dict[str, int] = {}
    for obj in objects:
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    manifest = {**document["manifest"], "reason": f"bench {target.name}", "counts": counts}
    manifest["sha256"] = hashlib.sha256(archive.canonical(objects)).hexdigest()
    target.write_bytes(archive.encode(manifest, objects))


def _described(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**o, "body": {**o["body"], "description": "restored " + o["body"]["description"]}}
        if o["kind"] == "terminals"
        else o
        for o in objects
    ]


def _no_terminals(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] != "terminals"]


def _digests_equal(a: ServerUnderTest, b: ServerUnderTest) -> bool:
    return bool(a.status()["digest"] == b.status()["digest"])


def _backup_once(a: ServerUnderTest) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    response = a.api("POST", "/api/v1/backups", timeout=120)
    elapsed = time.perf_counter() - t0
    if response.status_code != 201:
        raise RuntimeError(f"backup failed: {response.status_code} {response.text[:300]}")
    return elapsed, response.json()


def _restore_once(a: ServerUnderTest, b: ServerUnderTest, backup_id: str, label: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    response = a.api("POST", "/api/v1/restore", json={"backup_id": backup_id}, timeout=300)
    answered = time.perf_counter() - t0
    if response.status_code != 200:
        raise RuntimeError(f"restore of {label} failed: {response.status_code} {response.text[:300]}")
    result = response.json()
    # The version vectors are read from the database files (costs the servers nothing); a status call
    # computes the whole digest (~0.3 s of a server's CPU at 10,000 objects), so digests are compared
    # only once the vectors agree, and then gently.
    wait_until(lambda: vectors_equal(a, b), 120, 0.01, what=f"tm-b has the restore of {label}")
    vectors = time.perf_counter() - t0
    wait_until(lambda: _digests_equal(a, b), 60, 0.25, what=f"equal digests after the restore of {label}")
    confirmed = time.perf_counter() - t0
    return {
        "backup": label,
        "objects_changed": result["objects"],
        "answered_s": round(answered, 3),
        "b_identical_s": round(vectors, 3),
        "digests_confirmed_s": round(confirmed, 3),
    }


def _dist(values: list[float]) -> dict[str, float | None]:
    return {
        "median": median(values),
        "p99": percentile(values, 99),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }


def run(quick: bool = False, log: Log = print) -> BenchResult:
    plan = QUICK if quick else FULL
    machine = machine_info()
    began = time.monotonic()
    backups: list[dict[str, Any]] = []
    restores: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="thinsync-bench-") as tmp:
        root = Path(tmp)
        a, b = ServerUnderTest(root, name="tm-a"), ServerUnderTest(root, name="tm-b")
        with stopping(a, b, log=log):
            start_pair(a, b)
        t0 = time.perf_counter()
        _build(a.db_path, plan.terminals)
        log(f"[{NAME}] {plan.terminals:,} terminals committed into tm-a's data dir ({time.perf_counter() - t0:.1f} s)")
        with stopping(a, b, log=log):
            a.start()
            b.start()
            wait_until(lambda: vectors_equal(a, b), 300, 0.1, what="tm-b caught up")
            wait_until(lambda: _digests_equal(a, b), 120, 0.2, what="equal digests after catch-up")
            log(f"[{NAME}] pair in sync with {plan.terminals:,} terminals")

            for run_no in range(plan.backup_runs):
                elapsed, made = _backup_once(a)
                backups.append(
                    {"run": run_no + 1, "seconds": round(elapsed, 3), "bytes": made["size"], "id": made["id"]}
                )
                log(f"[{NAME}] backup {run_no + 1}: {elapsed:.3f} s, {made['size']:,} bytes")

            directory = a.data / "backups"
            x_id = backups[0]["id"]
            x_path = directory / f"{x_id}{archive.SUFFIX}"
            y_id, e_id = "bench-y-descriptions", "bench-e-no-terminals"
            _variant(x_path, directory / f"{y_id}{archive.SUFFIX}", _described)
            _variant(x_path, directory / f"{e_id}{archive.SUFFIX}", _no_terminals)
            cycle = (
                (y_id, f"Y: {plan.terminals:,} changed"),
                (e_id, f"E: {plan.terminals:,} removed"),
                (x_id, f"X: {plan.terminals:,} added"),
            )
            for cycle_no in range(plan.restore_cycles):
                for backup_id, label in cycle:
                    result = _restore_once(a, b, backup_id, label)
                    result["cycle"] = cycle_no + 1
                    restores.append(result)
                    log(
                        f"[{NAME}] restore {label}: answered {result['answered_s']} s, tm-b identical "
                        f"{result['b_identical_s']} s, digests confirmed {result['digests_confirmed_s']} s "
                        f"({result['objects_changed']:,} objects)"
                    )
    elapsed_total = time.monotonic() - began
    machine["load_at_end"] = load_now()

    backup_s = _dist([r["seconds"] for r in backups])
    answered = _dist([r["answered_s"] for r in restores])
    identical = _dist([r["b_identical_s"] for r in restores])
    confirmed = _dist([r["digests_confirmed_s"] for r in restores])
    by_label = {label: _dist([r["b_identical_s"] for r in restores if r["backup"] == label]) for _, label in cycle}
    passed = None
    if not quick and backup_s["median"] is not None and identical["median"] is not None:
        passed = backup_s["median"] <= TARGET_BACKUP_S and identical["median"] <= TARGET_RESTORE_S

    rows: list[list[Any]] = [
        [
            "backup (POST /api/v1/backups)",
            len(backups),
            backup_s["median"],
            backup_s["p99"],
            backup_s["max"],
            f"≤ {TARGET_BACKUP_S:g}",
        ],
        [
            "restore: 200 on tm-a",
            len(restores),
            answered["median"],
            answered["p99"],
            answered["max"],
            "—",
        ],
        [
            "restore: tm-b identical",
            len(restores),
            identical["median"],
            identical["p99"],
            identical["max"],
            f"≤ {TARGET_RESTORE_S:g}",
        ],
        [
            "restore: digests compared equal",
            len(restores),
            confirmed["median"],
            confirmed["p99"],
            confirmed["max"],
            "—",
        ],
    ]
    for label, dist in by_label.items():
        rows.append([f"  of which {label}", plan.restore_cycles, dist["median"], dist["p99"], dist["max"], ""])

    xs = [float(i + 1) for i in range(len(restores))]
    plot = Plot(
        title=f"Restore of {plan.terminals:,} terminals on a pair (each run one whole-configuration change)",
        x_label="restore run (Y changed, E removed, X added, repeated)",
        y_label="seconds from the request",
        series=[
            Series("200 on tm-a (verify, pre-restore backup, apply)", xs, [r["answered_s"] for r in restores], "o-"),
            Series("tm-b identical (version vector equals tm-a's)", xs, [r["b_identical_s"] for r in restores], "s--"),
            Series("digests compared equal", xs, [r["digests_confirmed_s"] for r in restores], "x:"),
            Series(
                "backup (POST /api/v1/backups), by run",
                [float(r["run"]) for r in backups],
                [r["seconds"] for r in backups],
                "^:",
            ),
        ],
        hlines=[
            (TARGET_RESTORE_S, f"restore target {TARGET_RESTORE_S:g} s"),
            (TARGET_BACKUP_S, f"backup target {TARGET_BACKUP_S:g} s"),
        ],
    )
    size = backups[0]["bytes"] if backups else None

    def s(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    return BenchResult(
        name=NAME,
        title=f"Backup and restore of {plan.terminals:,} terminals on a pair",
        target=f"backup of 10,000 terminals ≤ {TARGET_BACKUP_S:g} s; its restore ≤ {TARGET_RESTORE_S:g} s on a pair",
        measured=f"backup {s(backup_s['median'])} s (median of {len(backups)}, p99 {s(backup_s['p99'])} s); "
        f"restore until tm-b identical {s(identical['median'])} s (median of {len(restores)}, "
        f"p99 {s(identical['p99'])} s; 200 on tm-a after {s(answered['median'])} s, digests compared equal "
        f"after {s(confirmed['median'])} s)",
        passed=passed,
        machine=machine,
        params={
            "terminals": plan.terminals,
            "backup_runs": plan.backup_runs,
            "restore_cycles": plan.restore_cycles,
            "backup_file_bytes": size,
            "quick": quick,
        },
        table=Table(["what", "runs", "median s", "p99 s", "max s", "target s"], rows),
        plot=plot,
        notes=[
            f"Setup (not measured): tm-a and tm-b paired (redundant) and stopped; {plan.terminals:,} terminals "
            f"(name, unique MAC, description) committed in process into tm-a's data dir with Store.commit in batches "
            f"of {BATCH:,} ops; both started, tm-b caught up, digests equal.",
            f"A backup file of {plan.terminals:,} terminals is {size or 0:,} bytes (gzip JSON).",
            "Backup: POST /api/v1/backups on tm-a from request to the 201 (file written, fsynced and renamed; one "
            "read transaction).",
            "Restore: POST /api/v1/restore {backup_id} on tm-a. The server verifies the whole file (checksum, every "
            "object, references), writes the automatic pre-restore backup, and applies one change set of "
            f"{plan.terminals:,} items, which replicates to tm-b. 'tm-b identical' = tm-b's version vector equals "
            "tm-a's (read from the database files every 10 ms): tm-b has applied the restore's change set, "
            "atomically. 'digests compared equal' = then GET /api/v1/sync/status on both (each computes the "
            "digest of all objects, polled every 0.25 s) shows equal digests: every run checks it, and its time "
            "includes those status calls.",
            "Y (every terminal's description changed) and E (no terminals) are written from X's content with the "
            "open format (archive.encode) into tm-a's backup directory, so each restore changes all terminals.",
            f"p99 over {len(restores)} restores and {len(backups)} backups is the worst run or close to it.",
            f"Other load on the machine: at start {machine.get('load_at_start')}, at end {machine.get('load_at_end')}.",
            f"Total benchmark time {elapsed_total:.0f} s" + (" (quick mode)" if quick else "") + ".",
        ],
        data={
            "backups": backups,
            "restores": restores,
            "backup_s": backup_s,
            "restore_answered_s": answered,
            "restore_identical_s": identical,
            "restore_digests_confirmed_s": confirmed,
            "by_backup": by_label,
            "elapsed_s": round(elapsed_total, 1),
        },
    )


if __name__ == "__main__":
    import sys

    from bench.report import write_result

    result = run(quick="--quick" in sys.argv)
    print(result.measured)
    for kind, path in write_result(result).items():
        print(f"{kind}: {path}")
