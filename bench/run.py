"""Run every benchmark and write its results: `python -m bench.run [--quick] [--only NAME]`."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import backups, sync_live, sync_recovery, sync_store, terminals, write_api
from bench.report import RESULTS_DIR, BenchResult, verdict, write_result

# name -> run(quick) returning a BenchResult; later benchmarks add themselves here.
BENCHMARKS: dict[str, Callable[[bool], BenchResult]] = {
    write_api.NAME: lambda quick: write_api.run(quick=quick),
    sync_live.LATENCY: lambda quick: sync_live.run_latency(quick=quick),
    sync_live.THROUGHPUT: lambda quick: sync_live.run_throughput(quick=quick),
    sync_store.BULK: lambda quick: sync_store.run_bulk(quick=quick),
    sync_store.SNAPSHOT: lambda quick: sync_store.run_snapshot(quick=quick),
    sync_recovery.CATCHUP: lambda quick: sync_recovery.run_catchup(quick=quick),
    sync_recovery.PARTITION: lambda quick: sync_recovery.run_partition(quick=quick),
    sync_recovery.REPAIR: lambda quick: sync_recovery.run_repair(quick=quick),
    sync_recovery.RESTART: lambda quick: sync_recovery.run_restart(quick=quick),
    terminals.STORM: lambda quick: terminals.run_storm(quick=quick),
    terminals.HEARTBEATS: lambda quick: terminals.run_heartbeats(quick=quick),
    terminals.MEMORY: lambda quick: terminals.run_memory(quick=quick),
    backups.NAME: lambda quick: backups.run(quick=quick),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short run per step (smoke test)")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only this benchmark")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="where to write the results")
    args = parser.parse_args(argv)
    failed: list[str] = []
    for name in args.only or list(BENCHMARKS):
        began = time.monotonic()
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        try:
            result = BENCHMARKS[name](args.quick)
        except Exception as exc:  # one broken benchmark must not hide the others' results
            print(f"!! {name} failed: {exc}", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        paths = write_result(result, args.results)
        print(
            f"== {name}: {verdict(result.passed)} — target {result.target}; measured {result.measured} "
            f"({time.monotonic() - began:.0f} s)",
            flush=True,
        )
        for kind, path in paths.items():
            print(f"   {kind}: {path}", flush=True)
    # A missed target is a result, not a harness failure; only crashes make the exit code non-zero.
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
