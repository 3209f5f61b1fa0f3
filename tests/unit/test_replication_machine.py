"""Three real stores replicating through the store's own catch-up functions, driven by hypothesis:
edits and deletes on every replica, partial and duplicated deliveries in any interleaving, dropped
deliveries, snapshot merges and tombstone collection. At the end everything is delivered and every
replica must hold identical bytes (objects, digest) and, without snapshots, identical conflicts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from thinsync.clock import FakeClock
from thinsync.errors import ThinsyncError
from thinsync.store import ChangeRequest, Op, Store, conflicts, rows
from thinsync.sync import protocol as p

N = 3
NAMES = ["a", "b", "c"]
MACS = ["00:00:00:00:00:01", "00:00:00:00:00:02"]
LINK_KEY = "ab" * 32


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def objects_bytes(store: Store) -> list[tuple[Any, ...]]:
    return store.read(
        lambda c: c.execute(
            "SELECT kind, name, vals, stamps, tomb, version, live, problems FROM objects ORDER BY kind, name"
        ).fetchall()
    )


def deliver(src: Store, dst: Store, limit: int, duplicate: bool = False) -> bool:
    """One catch-up page from src to dst, exactly as a link does; returns True if a snapshot was used."""
    theirs = dst.vector()
    if src.lacks_history(theirs):
        # as the link sends it: the rows' JSON embedded in a frame, decoded on the other side
        frame = p.FrameCodec(LINK_KEY, "machine", "c").encode({"t": "snapshot", **src.snapshot(encoded=True)})
        run(dst.merge_snapshot(p.FrameCodec(LINK_KEY, "machine", "s").decode(frame)))
        return True
    page, _ = src.log_page(src.first_missing_id(theirs), theirs, limit)
    run(dst.apply_remote(page, max_skew_s=3600))
    if duplicate:
        run(dst.apply_remote(page, max_skew_s=3600))
    return False


def validity_is_current(conn: sqlite3.Connection) -> None:
    """Every object's stored problems are what its merged state gives, and the per-object check and the
    whole-store check (used for snapshot merges and large repairs) give the same answer."""
    per_query = rows.TxLookup(conn)
    whole = conflicts.all_problems(conn)
    for kind, name, vals, live, stored in conn.execute("SELECT kind, name, vals, live, problems FROM objects"):
        if kind == conflicts.KIND:
            continue
        expected: list[str] = []
        if live:
            expected = conflicts.problems_of(per_query, kind, name, json.loads(vals))
        assert whole.get((kind, name), []) == expected, (kind, name)
        assert (json.loads(stored) if stored else []) == expected, (kind, name, stored, expected)


class Replicas(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.clocks = [FakeClock(1_800_000_000.0 + i * 0.5) for i in range(N)]
        self.stores: list[Store] = []
        self.snapshots_used = False

    @initialize()
    def start(self) -> None:
        for i in range(N):
            store = Store.open(Path(self.tmp.name) / f"r{i}.db", self.clocks[i], create=True)
            store.create_identity(f"r{i}")
            self.stores.append(store)

    def write(self, i: int, *ops: Op) -> None:
        # A change refused locally has nothing to replicate.
        with contextlib.suppress(ThinsyncError):
            self.stores[i].commit_sync(ChangeRequest(f"r{i}", "edit", ops))

    @rule(i=st.integers(0, N - 1), name=st.sampled_from(NAMES), desc=st.text(max_size=3))
    def put_group(self, i: int, name: str, desc: str) -> None:
        self.write(i, Op("access-groups", name, "put", {"description": desc}))

    @rule(i=st.integers(0, N - 1), name=st.sampled_from(NAMES), ip=st.integers(1, 3), prio=st.integers(0, 2))
    def put_server(self, i: int, name: str, ip: int, prio: int) -> None:
        self.write(
            i, Op("display-servers", name, "patch" if prio else "put", {"address": f"10.0.0.{ip}", "priority": prio})
        )

    @rule(
        i=st.integers(0, N - 1),
        name=st.sampled_from(NAMES),
        servers=st.lists(st.sampled_from(NAMES), max_size=2, unique=True),
    )
    def put_client(self, i: int, name: str, servers: list[str]) -> None:
        self.write(i, Op("display-clients", name, "put", {"display_servers": servers}))

    @rule(i=st.integers(0, N - 1), name=st.sampled_from(NAMES), mac=st.sampled_from(MACS))
    def put_terminal(self, i: int, name: str, mac: str) -> None:
        self.write(i, Op("terminals", name, "put", {"hardware": {"mac": mac}}))

    @rule(
        i=st.integers(0, N - 1),
        kind=st.sampled_from(["access-groups", "display-servers", "display-clients", "terminals"]),
        name=st.sampled_from(NAMES),
    )
    def delete(self, i: int, kind: str, name: str) -> None:
        self.write(i, Op(kind, name, "delete"))

    @rule(src=st.integers(0, N - 1), dst=st.integers(0, N - 1), limit=st.integers(1, 4), dup=st.booleans())
    def sync_page(self, src: int, dst: int, limit: int, dup: bool) -> None:
        if src != dst:
            self.snapshots_used |= deliver(self.stores[src], self.stores[dst], limit, dup)

    @rule(src=st.integers(0, N - 1), dst=st.integers(0, N - 1))
    def snapshot_merge(self, src: int, dst: int) -> None:
        if src != dst:
            run(self.stores[dst].merge_snapshot(self.stores[src].snapshot()))
            self.snapshots_used = True

    @rule(i=st.integers(0, N - 1), seconds=st.floats(-5, 5))
    def clock_moves(self, i: int, seconds: float) -> None:
        self.clocks[i].set(self.clocks[i].time() + seconds)

    @precondition(lambda self: bool(self.stores))
    @rule(i=st.integers(0, N - 1))
    def collect_tombstones(self, i: int) -> None:
        # Safe only when every member holds the delete and this replica holds all they held.
        vectors = [s.vector() for s in self.stores]
        mine = vectors[i]
        if all(all(mine.get(o, 0) >= q for o, q in v.items()) for v in vectors):
            covered = {o: min(v.get(o, 0) for v in vectors) for o in set().union(*vectors)}
            run(self.stores[i].collect_tombstones(covered))

    @invariant()
    def local_state_is_valid_json(self) -> None:
        for store in self.stores:
            assert store.vector() is not None

    def teardown(self) -> None:
        """Deliver everything everywhere, then compare the replicas byte for byte."""
        try:
            if not self.stores:
                return
            for _ in range(6):
                for src in range(N):
                    for dst in range(N):
                        if src != dst:
                            self.snapshots_used |= deliver(self.stores[src], self.stores[dst], 10_000)
            vectors = [s.vector() for s in self.stores]
            assert all(v == vectors[0] for v in vectors), vectors
            first = objects_bytes(self.stores[0])
            # Tombstones may have been collected on some replicas only: compare live objects and
            # every tombstone that all still hold.
            live = [[r for r in objects_bytes(s) if r[6]] for s in self.stores]
            assert all(x == live[0] for x in live)
            digests = [s.digest() for s in self.stores]
            if all(len(objects_bytes(s)) == len(first) for s in self.stores):
                assert len({d.hex() for d in digests}) == 1
            if not self.snapshots_used:
                opened = [sorted(c["id"] for c in s.conflicts()) for s in self.stores]
                assert all(o == opened[0] for o in opened), opened
            for store in self.stores:
                store.read(validity_is_current)
        finally:
            for store in self.stores:
                store.close()
            self.tmp.cleanup()


# `make faults` raises the number of examples (THINSYNC_MACHINE_EXAMPLES) for long runs.
Replicas.TestCase.settings = settings(
    max_examples=int(os.environ.get("THINSYNC_MACHINE_EXAMPLES", "40")), stateful_step_count=30, deadline=None
)
test_replicas_converge = Replicas.TestCase
