"""The Store: opening a data dir, node identity, the one write path, reads, subscribers."""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from thinsync import jsonfmt
from thinsync.clock import Clock
from thinsync.errors import Conflict, StoreError
from thinsync.model.registry import KINDS
from thinsync.model.validate import SINGLETON_NAME
from thinsync.store import replica, rows, schema
from thinsync.store.changes import ChangeRequest, ChangeSet, CommitResult, Item
from thinsync.store.db import Readers, Writer, connect, open_database
from thinsync.store.digest import Digest
from thinsync.store.hlc import HLC
from thinsync.store.stamps import EMPTY, State, apply
from thinsync.store.write import commit_local

log = logging.getLogger(__name__)
T = TypeVar("T")
# Called with the change sets of one commit, in log order (in the writer thread: keep it short).
Listener = Callable[[list[ChangeSet]], None]


@dataclass(frozen=True)
class Identity:
    node_id: str
    name: str
    incarnation: int
    token_secret: str

    @property
    def origin(self) -> str:
        return f"{self.node_id}.{self.incarnation}"


class Store:
    """One data directory's SQLite database. Thread-safe; async callers use the `a*` helpers."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self.writer = Writer(path)
        self.readers = Readers(path)
        self.identity: Identity | None = None
        self.hlc = HLC(clock)
        # Each listener with the kinds it watches (None: every commit).
        self._listeners: list[tuple[Listener, frozenset[str] | None]] = []
        self._listeners_lock = threading.Lock()

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    def open(cls, path: Path, clock: Clock, *, create: bool = False) -> Store:
        """Open (and migrate) the database; `create` allows a new file."""
        if not path.exists() and not create:
            raise StoreError(f"no thinsync data at {path.parent}; run 'thinsync init --data {path.parent}' first")
        path.parent.mkdir(parents=True, exist_ok=True)
        open_database(path)
        conn = connect(path)
        try:
            schema.migrate(conn)
            integrity = conn.execute("PRAGMA quick_check").fetchone()[0]
            if integrity != "ok":
                raise StoreError(f"the database {path} is damaged ({integrity}); restore it from a backup")
        finally:
            conn.close()
        store = cls(path, clock)
        store.writer.start()
        store._load_identity()
        if store.identity is not None:
            store._next_incarnation()
        return store

    def close(self) -> None:
        self.writer.stop()
        self.readers.close()

    def _load_identity(self) -> None:
        def read(conn: sqlite3.Connection) -> tuple[dict[str, str], int]:
            values = dict(conn.execute("SELECT key, value FROM node").fetchall())
            top = conn.execute("SELECT COALESCE(MAX(hlc), 0) FROM changes").fetchone()[0]
            return values, int(top)

        values, top = self.readers.read(read)
        self.hlc.observe(top)
        if "node_id" in values:
            self.identity = Identity(
                node_id=values["node_id"],
                name=values["name"],
                incarnation=int(values["incarnation"]),
                token_secret=values["token_secret"],
            )

    def create_identity(self, name: str) -> Identity:
        """Make this node's identity (once, at init)."""
        if self.identity is not None:
            raise Conflict(f"this data directory is already initialised as server '{self.identity.name}'")
        identity = Identity(node_id=secrets.token_hex(8), name=name, incarnation=1, token_secret=secrets.token_hex(32))

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO node (key, value) VALUES (?, ?)",
                [
                    ("node_id", identity.node_id),
                    ("name", identity.name),
                    ("incarnation", str(identity.incarnation)),
                    ("token_secret", identity.token_secret),
                    ("created_at", str(self.clock.time())),
                ],
            )

        self.writer.run(job)
        self.identity = identity
        return identity

    def new_incarnation(self) -> Identity:
        """Take a new incarnation now (after installing another server's snapshot)."""
        self._next_incarnation()
        return self.require_identity()

    def _next_incarnation(self) -> None:
        """Every start takes a new incarnation (a new origin with its own sequence numbers).

        A data dir restored or rolled back by hand cannot know that it was; if it reused its old
        origin, its next writes would take sequence numbers its peers already hold with other
        contents. A fresh origin per start makes that impossible; the old entries the peers hold
        simply flow back through catch-up. The stored counter is rolled back with the disk, so the
        new incarnation is also at least the wall clock in milliseconds: above every incarnation an
        earlier start took, even one the restored copy never saw (in seconds, a start, a pairing and
        a restart of a rolled-back copy within two seconds took one incarnation twice).
        """
        identity = self.require_identity()
        incarnation = max(identity.incarnation + 1, int(self.clock.time() * 1000))
        fresh = Identity(identity.node_id, identity.name, incarnation, identity.token_secret)
        self.writer.run(
            lambda conn: conn.execute("UPDATE node SET value=? WHERE key='incarnation'", (str(fresh.incarnation),))
        )
        self.identity = fresh

    def node_value(self, key: str) -> str | None:
        """A node-local setting (cluster id, cluster key, ...)."""
        row = self.read(lambda conn: conn.execute("SELECT value FROM node WHERE key=?", (key,)).fetchone())
        return None if row is None else str(row[0])

    def set_node_values(self, values: dict[str, str | None]) -> None:
        def job(conn: sqlite3.Connection) -> None:
            for key, value in values.items():
                if value is None:
                    conn.execute("DELETE FROM node WHERE key=?", (key,))
                else:
                    conn.execute(
                        "INSERT INTO node (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                        (key, value),
                    )

        self.writer.run(job)

    def require_identity(self) -> Identity:
        if self.identity is None:
            raise StoreError("this data directory has no server identity; run 'thinsync init' first")
        return self.identity

    # ---------------------------------------------------------------- subscribers

    def subscribe(self, listener: Listener, kinds: Iterable[str] | None = None) -> None:
        """Call `listener(change_sets)` after every commit with what it committed (in the writer thread:
        keep it short). One call per commit: a page of 2,000 replicated change sets is one call.

        `kinds`: call it only for commits that touch one of these kinds (the store looks at the items
        once for all listeners)."""
        with self._listeners_lock:
            self._listeners.append((listener, None if kinds is None else frozenset(kinds)))

    def unsubscribe(self, listener: Listener) -> None:
        with self._listeners_lock:
            self._listeners = [entry for entry in self._listeners if entry[0] != listener]

    def _publish(self, changes: list[ChangeSet]) -> None:
        if not changes:
            return
        with self._listeners_lock:
            listeners = list(self._listeners)
        touched: set[str] | None = None
        for listener, kinds in listeners:
            if kinds is not None:
                if touched is None:
                    touched = {item.kind for change in changes for item in change.items}
                if kinds.isdisjoint(touched):
                    continue
            try:
                listener(changes)
            except Exception:
                log.exception("change listener failed")

    def _publish_merged(self, kinds: set[str]) -> None:
        """Objects of these kinds changed without a change set (a snapshot installed or merged, a repair):
        tell subscribers, so caches of them (accounts, the server list) are refreshed. The notice has
        id 0 and no origin: it is not in the log, and the change stream does not show it."""
        items = tuple(Item(kind, "", {}, False, None) for kind in sorted(kinds))
        self._publish([ChangeSet(0, "", 0, 0, "thinsync sync", "objects merged from another server", items, 0.0)])

    # ---------------------------------------------------------------- the one write path

    def commit_sync(self, request: ChangeRequest) -> CommitResult:
        """Validate and commit a change request atomically (blocking; not for the event loop)."""
        return self.writer.run(lambda conn: self._commit(conn, request))  # type: ignore[no-any-return]

    async def commit(self, request: ChangeRequest) -> CommitResult:
        """Validate and commit a change request atomically; resolves once durable."""
        future = self.writer.submit(lambda conn: self._commit(conn, request))
        return await asyncio.wrap_future(future)  # type: ignore[no-any-return]

    def _commit(self, conn: sqlite3.Connection, request: ChangeRequest) -> CommitResult:
        identity = self.require_identity()
        result, change = commit_local(conn, identity.origin, self.hlc, self.clock, request)
        if change is not None:
            result.after_commit = lambda: self._publish([change])
        return result

    # ---------------------------------------------------------------- replication

    async def apply_remote(
        self, sets: list[ChangeSet] | Callable[[], list[ChangeSet]], max_skew_s: float
    ) -> replica.Applied:
        """Merge change sets from a peer in one transaction; publishes each one applied.

        `sets` may be a function that returns them: it then runs in the writer thread (a receiver
        hands over the parsing of a large page with it, and leaves its event loop free)."""

        def job(conn: sqlite3.Connection) -> replica.Applied:
            origin = self.require_identity().origin
            batch = sets() if callable(sets) else sets
            applied = replica.apply_remote(conn, batch, self.hlc, self.clock.time(), max_skew_s, origin)
            applied.received = {c.origin: c.seq for c in batch}
            applied.vector = rows.vector(conn)
            applied.after_commit = lambda: self._publish(applied.applied)
            return applied

        return await asyncio.wrap_future(self.writer.submit(job))  # type: ignore[no-any-return]

    def vector(self) -> dict[str, int]:
        return self.read(rows.vector)

    def log_page(
        self, after_id: int, theirs: dict[str, int], limit: int, held_origin: str | None = None
    ) -> tuple[list[ChangeSet], int]:
        return self.read(lambda conn: replica.log_page(conn, after_id, theirs, limit, held_origin))

    def first_missing_id(self, theirs: dict[str, int]) -> int:
        return self.read(lambda conn: replica.first_missing_id(conn, theirs))

    def lacks_history(self, theirs: dict[str, int]) -> bool:
        return self.read(lambda conn: replica.lacks_history(conn, theirs))

    def snapshot(self, encoded: bool = False) -> dict[str, Any]:
        """Every stamped object and tombstone and the vector (see `replica.snapshot` for `encoded`)."""
        return self.read(lambda conn: replica.snapshot(conn, encoded))

    async def replace_all(self, snap: dict[str, Any]) -> None:
        """Install another server's snapshot in place of this server's configuration and log."""
        kinds = {str(o["kind"]) for o in snap["objects"]} | set(KINDS)
        await asyncio.wrap_future(self.writer.submit(lambda conn: replica.replace_all(conn, snap, self.clock.time())))
        self._publish_merged(kinds)

    async def merge_snapshot(self, snap: dict[str, Any]) -> int:
        """Merge a snapshot by the per-field rule (own unshipped edits survive) and take its vector."""

        def job(conn: sqlite3.Connection) -> int:
            changed = replica.merge_objects(conn, snap["objects"], self.clock.time())
            replica.raise_vector(conn, snap["vector"])
            return changed

        changed: int = await asyncio.wrap_future(self.writer.submit(job))
        if changed:
            self._publish_merged({str(o["kind"]) for o in snap["objects"]})
        return changed

    async def merge_objects(self, objects: list[dict[str, Any]]) -> int:
        """Repair: merge objects another server holds differently (digest mismatch)."""
        job = lambda conn: replica.merge_objects(conn, objects, self.clock.time())  # noqa: E731
        changed: int = await asyncio.wrap_future(self.writer.submit(job))
        if changed:
            self._publish_merged({str(o["kind"]) for o in objects})
        return changed

    def digest(self) -> Digest:
        return self.read(replica.digest)

    def export(self) -> tuple[list[dict[str, Any]], str]:
        """Every live object ({kind, name, body}) and the digest, from one read transaction."""

        def fn(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], str]:
            found = conn.execute("SELECT kind, name, vals FROM objects WHERE live=1 ORDER BY kind, name").fetchall()
            objects = [{"kind": k, "name": n, "body": jsonfmt.loads(v)} for k, n, v in found]
            return objects, replica.digest(conn).hex()

        return self.read(fn)

    def digest_at(self) -> tuple[Digest, dict[str, int]]:
        """The digest and the vector it reflects, read together."""
        return self.read(replica.digest_at)

    def objects_in_buckets(self, buckets: set[int]) -> list[dict[str, Any]]:
        return self.read(lambda conn: replica.objects_in_buckets(conn, buckets))

    async def collect_tombstones(self, covered: dict[str, int]) -> int:
        job = lambda conn: replica.collect_tombstones(conn, covered)  # noqa: E731
        return await asyncio.wrap_future(self.writer.submit(job))  # type: ignore[no-any-return]

    def conflicts(self, open_only: bool = True) -> list[dict[str, Any]]:
        """Recorded conflicts (replicated `conflicts` objects), oldest first."""
        found = []
        after = ""
        while True:
            page = self.list_live("conflicts", after, 1000)
            for name, state, _ in page:
                if open_only and state.vals.get("closed"):
                    continue
                found.append({"id": name, **state.vals, "version": state.version})
            if len(page) < 1000:
                break
            after = page[-1][0]
        return sorted(found, key=lambda c: (c["version"], c["id"]))

    def problems(self, kind: str, name: str) -> list[str]:
        row = self.read(
            lambda conn: conn.execute("SELECT problems FROM objects WHERE kind=? AND name=?", (kind, name)).fetchone()
        )
        return jsonfmt.loads(row[0]) if row and row[0] else []

    def peers(self) -> dict[str, dict[str, Any]]:
        found = self.read(lambda conn: conn.execute("SELECT node_id, name, acked, updated FROM peers").fetchall())
        return {r[0]: {"name": r[1], "acked": jsonfmt.loads(r[2]), "updated": r[3]} for r in found}

    def save_peer(self, node_id: str, name: str, acked: dict[str, int]) -> None:
        """Remember a peer and the vector it last acknowledged (node-local; not waited for)."""
        self.writer.submit(
            lambda conn: conn.execute(
                "INSERT INTO peers (node_id, name, acked, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (node_id) DO UPDATE SET "
                "name=excluded.name, acked=excluded.acked, updated=excluded.updated",
                (node_id, name, rows.dumps(acked), self.clock.time()),
            )
        )

    def forget_peers(self) -> None:
        self.writer.run(lambda conn: conn.execute("DELETE FROM peers"))

    # ---------------------------------------------------------------- terminal live status (node-local)

    def load_terminal_status(self) -> list[tuple[Any, ...]]:
        return self.read(
            lambda conn: conn.execute(
                "SELECT mac, last_seen, booted_from, address, state, uptime_s, unassigned FROM terminal_status"
            ).fetchall()
        )

    def save_terminal_status(self, rows_: list[tuple[Any, ...]]) -> None:
        """Persist live status (not waited for)."""
        self.writer.submit(
            lambda conn: conn.executemany(
                "INSERT INTO terminal_status (mac, last_seen, booted_from, address, state, uptime_s, unassigned) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (mac) DO UPDATE SET last_seen=excluded.last_seen, "
                "booted_from=excluded.booted_from, address=excluded.address, state=excluded.state, "
                "uptime_s=excluded.uptime_s, unassigned=excluded.unassigned",
                rows_,
            )
        )

    def first_created(self, kind: str, limit: int) -> list[str]:
        """Names of the first `limit` live objects of a kind by creation stamp (the same on every server)."""
        found = self.read(
            lambda conn: conn.execute(
                "SELECT name FROM objects WHERE kind=? AND live=1 ORDER BY created, name LIMIT ?", (kind, limit)
            ).fetchall()
        )
        return [r[0] for r in found]

    def holder_of(self, kind: str, label: str, value: str) -> str | None:
        """The name of the live object holding a unique key (a terminal by MAC), or None."""
        row = self.read(
            lambda conn: conn.execute(
                "SELECT name FROM uniques WHERE kind=? AND label=? AND value=? ORDER BY name LIMIT 1",
                (kind, label, value),
            ).fetchone()
        )
        return None if row is None else str(row[0])

    # ---------------------------------------------------------------- reads

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self.readers.read(fn)

    async def aread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read in a worker thread so the event loop never blocks on disk."""
        return await asyncio.to_thread(self.readers.read, fn)

    def get(self, kind: str, name: str) -> State:
        """The stamped state of one object (EMPTY when it never existed)."""
        key = (kind, SINGLETON_NAME if KINDS[kind].singleton else name)
        return self.read(
            lambda conn: rows.row_state(
                conn.execute("SELECT vals, stamps, tomb FROM objects WHERE kind=? AND name=?", key).fetchone()
            )
        )

    def list_live(self, kind: str, after: str = "", limit: int = 1000) -> list[tuple[str, State, list[str]]]:
        """Live objects of a kind in name order, starting after `after`, with their problems."""

        def fn(conn: sqlite3.Connection) -> list[tuple[str, State, list[str]]]:
            found = conn.execute(
                "SELECT name, vals, stamps, tomb, problems FROM objects "
                "WHERE kind=? AND live=1 AND name>? ORDER BY name LIMIT ?",
                (kind, after, limit),
            ).fetchall()
            return [(r[0], rows.row_state((r[1], r[2], r[3])), jsonfmt.loads(r[4]) if r[4] else []) for r in found]

        return self.read(fn)

    def count(self, kind: str) -> int:
        return int(
            self.read(
                lambda c: c.execute("SELECT COUNT(*) FROM objects WHERE kind=? AND live=1", (kind,)).fetchone()[0]
            )
        )

    def history(self, kind: str, name: str) -> list[tuple[ChangeSet, State]]:
        """Every change set that touched the object, oldest first, with the object's state after it."""
        key = (kind, SINGLETON_NAME if KINDS[kind].singleton else name)

        def fn(conn: sqlite3.Connection) -> list[ChangeSet]:
            found = conn.execute(
                "SELECT c.id, c.origin, c.seq, c.hlc, c.author, c.summary, c.items, c.applied_at "
                "FROM change_objects o JOIN changes c ON c.id = o.change_id "
                "WHERE o.kind=? AND o.name=? ORDER BY c.id",
                key,
            ).fetchall()
            return [rows.row_change(r) for r in found]

        state = EMPTY
        out: list[tuple[ChangeSet, State]] = []
        for change in self.read(fn):
            for item in change.items:
                if (item.kind, item.name) == key:
                    state = apply(state, change.stamp, item.set, item.delete)
            out.append((change, state))
        return out

    async def truncate_log(self, before: float, covered: dict[str, int]) -> int:
        """Drop change sets applied before `before` that every member holds (`covered`): their history
        is gone, the objects stay. A peer further behind gets a snapshot instead. Returns how many."""

        def job(conn: sqlite3.Connection) -> int:
            old = conn.execute("SELECT id, origin, seq FROM changes WHERE applied_at < ?", (before,)).fetchall()
            ids = [i for i, origin, seq in old if seq <= covered.get(origin, 0)]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                conn.execute(f"DELETE FROM change_objects WHERE change_id IN ({marks})", chunk)
                conn.execute(f"DELETE FROM changes WHERE id IN ({marks})", chunk)
            return len(ids)

        return await asyncio.wrap_future(self.writer.submit(job))  # type: ignore[no-any-return]

    def states_as_of(self, before_hlc: int) -> dict[tuple[str, str], State]:
        """Every object's state from the changes stamped before `before_hlc` (the configuration as it
        was then, as far as the log reaches back)."""

        def fn(conn: sqlite3.Connection) -> list[ChangeSet]:
            found = conn.execute(
                f"SELECT {rows.CHANGE_COLUMNS} FROM changes WHERE hlc < ? ORDER BY hlc, origin", (before_hlc,)
            ).fetchall()
            return [rows.row_change(r) for r in found]

        states: dict[tuple[str, str], State] = {}
        for change in self.read(fn):
            for item in change.items:
                key = (item.kind, item.name)
                states[key] = apply(states.get(key, EMPTY), change.stamp, item.set, item.delete)
        return states

    def changes_since(self, after_id: int, limit: int = 1000) -> list[ChangeSet]:
        """Change sets in local log order after position `after_id`."""

        def fn(conn: sqlite3.Connection) -> list[ChangeSet]:
            found = conn.execute(
                "SELECT id, origin, seq, hlc, author, summary, items, applied_at FROM changes "
                "WHERE id>? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
            return [rows.row_change(r) for r in found]

        return self.read(fn)

    # ---------------------------------------------------------------- node-local event log

    def add_event(self, category: str, level: str, message: str, data: dict[str, Any], retention: int) -> None:
        """Append to the node-local event log (not waited for; never replicated)."""

        def job(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "INSERT INTO events (time, category, level, message, data) VALUES (?, ?, ?, ?, ?)",
                (self.clock.time(), category, level, message, rows.dumps(data)),
            )
            last = int(cursor.lastrowid or 0)
            if last % 1000 == 0 and last > retention:
                conn.execute("DELETE FROM events WHERE id <= ?", (last - retention,))

        self.writer.submit(job)

    def events(self, category: str | None, after: int, limit: int) -> list[dict[str, Any]]:
        def fn(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            sql = "SELECT id, time, category, level, message, data FROM events WHERE id>?"
            args: list[Any] = [after]
            if category:
                sql += " AND category=?"
                args.append(category)
            sql += " ORDER BY id DESC LIMIT ?"
            args.append(limit)
            return [
                {
                    "id": r[0],
                    "time": r[1],
                    "category": r[2],
                    "level": r[3],
                    "message": r[4],
                    "data": jsonfmt.loads(r[5]),
                }
                for r in conn.execute(sql, args)
            ]

        return self.read(fn)

    def stats(self) -> dict[str, Any]:
        """Counts for metrics: live objects per kind and the log length."""

        def fn(conn: sqlite3.Connection) -> dict[str, Any]:
            per_kind = dict(conn.execute("SELECT kind, COUNT(*) FROM objects WHERE live=1 GROUP BY kind").fetchall())
            log_len = conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
            return {"objects": per_kind, "changes": log_len}

        return self.read(fn)
