"""The Store: opening a data dir, node identity, the one write path, reads, subscribers."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from thinsync.clock import Clock
from thinsync.errors import Conflict, Invalid, NotFound, PreconditionFailed, StoreError
from thinsync.model.registry import ACCOUNT_KINDS, KINDS, KindSpec
from thinsync.model.validate import (
    SINGLETON_NAME,
    check_accounts,
    check_delete,
    check_references,
    check_uniques,
    merge_patch,
    ref_targets,
    unique_keys,
    validate_body,
)
from thinsync.store import schema
from thinsync.store.changes import ChangeRequest, ChangeSet, CommitResult, Item, Op, OpResult
from thinsync.store.db import Readers, Writer, connect, open_database
from thinsync.store.hlc import HLC, make_stamp, stamp_hlc
from thinsync.store.stamps import EMPTY, State, apply

log = logging.getLogger(__name__)
T = TypeVar("T")
Listener = Callable[[ChangeSet], None]


@dataclass(frozen=True)
class Identity:
    node_id: str
    name: str
    incarnation: int
    token_secret: str

    @property
    def origin(self) -> str:
        return f"{self.node_id}.{self.incarnation}"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _row_state(row: tuple[str, str, str | None] | None) -> State:
    if row is None:
        return EMPTY
    vals, stamps, tomb = row
    return State(vals=json.loads(vals), stamps=json.loads(stamps), tomb=tomb)


class _TxLookup:
    """Cross-object checks read the writer's own transaction, so they see uncommitted siblings."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def exists(self, kind: str, name: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM objects WHERE kind=? AND name=? AND live=1", (kind, name)).fetchone()
        return row is not None

    def holders(self, kind: str, label: str, value: str) -> list[str]:
        rows = self._conn.execute("SELECT name FROM uniques WHERE kind=? AND label=? AND value=?", (kind, label, value))
        return [r[0] for r in rows]

    def referrers(self, kind: str, name: str) -> list[tuple[str, str]]:
        rows = self._conn.execute(
            "SELECT kind, name FROM refs WHERE target_kind=? AND target_name=? ORDER BY kind, name", (kind, name)
        )
        return [(r[0], r[1]) for r in rows]


class Store:
    """One data directory's SQLite database. Thread-safe; async callers use the `a*` helpers."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self.writer = Writer(path)
        self.readers = Readers(path)
        self.identity: Identity | None = None
        self.hlc = HLC(clock)
        self._listeners: list[Listener] = []
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

    def require_identity(self) -> Identity:
        if self.identity is None:
            raise StoreError("this data directory has no server identity; run 'thinsync init' first")
        return self.identity

    # ---------------------------------------------------------------- subscribers

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(change_set)` after every commit (in the writer thread: keep it short)."""
        with self._listeners_lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._listeners_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _publish(self, change: ChangeSet) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(change)
            except Exception:
                log.exception("change listener failed")

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
        planned: list[tuple[KindSpec, str, State, dict[str, Any], bool]] = []
        results: list[OpResult] = []
        seen: set[tuple[str, str]] = set()
        for op in request.ops:
            spec = KINDS[op.kind]
            name = SINGLETON_NAME if spec.singleton else op.name
            if (spec.name, name) in seen:
                raise Invalid(f"{spec.title} '{name}' appears twice in one change; change each object once")
            seen.add((spec.name, name))
            before = _row_state(
                conn.execute(
                    "SELECT vals, stamps, tomb FROM objects WHERE kind=? AND name=?", (spec.name, name)
                ).fetchone()
            )
            if op.if_match is not None and op.if_match != before.version:
                if not before.live:
                    raise PreconditionFailed(f"{spec.title} '{name}' does not exist, so If-Match cannot match")
                raise PreconditionFailed(
                    f"{spec.title} '{name}' has changed since you read it "
                    f"(your version {op.if_match}, current {before.version}); read it again and retry"
                )
            fields, delete = self._plan(spec, name, op, before)
            results.append(OpResult(spec.name, name, op.action, not before.live and not delete, False, before))
            if fields or delete:
                planned.append((spec, name, before, fields, delete))
        if not planned:
            return CommitResult(results=results, change=None)

        # A local write is stamped above the wall clock, every stamp seen, and the objects it touches.
        floor = max((stamp_hlc(before.version) + 1 for _, _, before, _, _ in planned if before.version), default=0)
        hlc = self.hlc.now(floor)
        stamp = make_stamp(hlc, identity.origin)
        items: list[Item] = []
        after: dict[tuple[str, str], State] = {}
        for spec, name, before, fields, delete in planned:
            state = apply(before, stamp, fields, delete)
            after[(spec.name, name)] = state
            items.append(Item(spec.name, name, fields, delete, before.version or None))
            self._write_object(conn, spec.name, name, state, stamp)
        lookup = _TxLookup(conn)
        for (kind, name), state in after.items():
            spec = KINDS[kind]
            if state.live:
                check_references(spec, name, dict(state.vals), lookup)
                check_uniques(spec, name, dict(state.vals), lookup)
            else:
                check_delete(spec, name, lookup)
        if any(kind in ACCOUNT_KINDS for kind, _ in after):
            check_accounts(*_accounts(conn))

        seq = conn.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM changes WHERE origin=?", (identity.origin,)
        ).fetchone()[0]
        change = self._append_change(conn, identity.origin, seq, hlc, request.author, request.summary, items)
        for result in results:
            key = (result.kind, result.name)
            if key in after:
                result.state = after[key]
                result.changed = True
        return CommitResult(results=results, change=change, after_commit=lambda: self._publish(change))

    def _plan(self, spec: KindSpec, name: str, op: Op, before: State) -> tuple[dict[str, Any], bool]:
        """The fields an op sets (only those whose value changes) and whether it deletes."""
        title = f"{spec.title} '{name}'"
        if op.action == "delete":
            if spec.singleton:
                raise Conflict(f"the {spec.title} cannot be deleted; put the values you want instead")
            if not before.live:
                raise NotFound(f"{title} does not exist")
            return {}, True
        if op.action == "patch":
            if not before.live and not spec.singleton:
                raise NotFound(f"{title} does not exist; create it with PUT")
            if not isinstance(op.body, dict):
                raise Invalid("a merge patch must be a JSON object")
            current = {"name": name, **before.vals} if before.live else {}
            body = validate_body(spec, name, merge_patch(current, op.body))
        else:
            raw = op.body
            if isinstance(raw, dict) and before.live:
                raw = dict(raw)
                for secret in spec.secrets:
                    if secret.stored not in raw and before.vals.get(secret.stored):
                        raw[secret.stored] = before.vals[secret.stored]
            body = validate_body(spec, name, raw)
        if not before.live:
            return body, False
        return {f: v for f, v in body.items() if before.vals.get(f) != v or f not in before.stamps}, False

    def _write_object(self, conn: sqlite3.Connection, kind: str, name: str, state: State, stamp: str) -> None:
        spec = KINDS[kind]
        conn.execute(
            "INSERT INTO objects (kind, name, vals, stamps, tomb, version, live, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, name) DO UPDATE SET vals=excluded.vals, stamps=excluded.stamps, "
            "tomb=excluded.tomb, version=excluded.version, live=excluded.live, "
            "created=CASE WHEN objects.live=0 AND excluded.live=1 THEN excluded.created ELSE objects.created END",
            (kind, name, _dumps(state.vals), _dumps(state.stamps), state.tomb, state.version, int(state.live), stamp),
        )
        conn.execute("DELETE FROM refs WHERE kind=? AND name=?", (kind, name))
        conn.execute("DELETE FROM uniques WHERE kind=? AND name=?", (kind, name))
        if state.live:
            conn.executemany(
                "INSERT OR IGNORE INTO refs (target_kind, target_name, kind, name) VALUES (?, ?, ?, ?)",
                [(tk, tn, kind, name) for tk, tn in ref_targets(spec, dict(state.vals))],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO uniques (kind, label, value, name) VALUES (?, ?, ?, ?)",
                [(kind, label, value, name) for label, value in unique_keys(spec, dict(state.vals))],
            )

    def _append_change(
        self, conn: sqlite3.Connection, origin: str, seq: int, hlc: int, author: str, summary: str, items: list[Item]
    ) -> ChangeSet:
        applied_at = self.clock.time()
        change = ChangeSet(0, origin, seq, hlc, author, summary, tuple(items), applied_at)
        cursor = conn.execute(
            "INSERT INTO changes (origin, seq, hlc, author, summary, items, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (origin, seq, hlc, author, summary, change.items_json(), applied_at),
        )
        change_id = int(cursor.lastrowid or 0)
        conn.executemany(
            "INSERT OR IGNORE INTO change_objects (kind, name, change_id) VALUES (?, ?, ?)",
            [(i.kind, i.name, change_id) for i in items],
        )
        return ChangeSet(change_id, origin, seq, hlc, author, summary, tuple(items), applied_at)

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
            lambda conn: _row_state(
                conn.execute("SELECT vals, stamps, tomb FROM objects WHERE kind=? AND name=?", key).fetchone()
            )
        )

    def list_live(self, kind: str, after: str = "", limit: int = 1000) -> list[tuple[str, State]]:
        """Live objects of a kind in name order, starting after `after`."""

        def fn(conn: sqlite3.Connection) -> list[tuple[str, State]]:
            rows = conn.execute(
                "SELECT name, vals, stamps, tomb FROM objects WHERE kind=? AND live=1 AND name>? ORDER BY name LIMIT ?",
                (kind, after, limit),
            ).fetchall()
            return [(r[0], _row_state((r[1], r[2], r[3]))) for r in rows]

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
            rows = conn.execute(
                "SELECT c.id, c.origin, c.seq, c.hlc, c.author, c.summary, c.items, c.applied_at "
                "FROM change_objects o JOIN changes c ON c.id = o.change_id "
                "WHERE o.kind=? AND o.name=? ORDER BY c.id",
                key,
            ).fetchall()
            return [_row_change(r) for r in rows]

        state = EMPTY
        out: list[tuple[ChangeSet, State]] = []
        for change in self.read(fn):
            for item in change.items:
                if (item.kind, item.name) == key:
                    state = apply(state, change.stamp, item.set, item.delete)
            out.append((change, state))
        return out

    def changes_since(self, after_id: int, limit: int = 1000) -> list[ChangeSet]:
        """Change sets in local log order after position `after_id`."""

        def fn(conn: sqlite3.Connection) -> list[ChangeSet]:
            rows = conn.execute(
                "SELECT id, origin, seq, hlc, author, summary, items, applied_at FROM changes "
                "WHERE id>? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
            return [_row_change(r) for r in rows]

        return self.read(fn)

    # ---------------------------------------------------------------- node-local event log

    def add_event(self, category: str, level: str, message: str, data: dict[str, Any], retention: int) -> None:
        """Append to the node-local event log (not waited for; never replicated)."""

        def job(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "INSERT INTO events (time, category, level, message, data) VALUES (?, ?, ?, ?, ?)",
                (self.clock.time(), category, level, message, _dumps(data)),
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
                {"id": r[0], "time": r[1], "category": r[2], "level": r[3], "message": r[4], "data": json.loads(r[5])}
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


def _accounts(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    admins = [json.loads(r[0]) for r in conn.execute("SELECT vals FROM objects WHERE kind='admins' AND live=1")]
    groups = {
        r[0]: json.loads(r[1])
        for r in conn.execute("SELECT name, vals FROM objects WHERE kind='security-groups' AND live=1")
    }
    return admins, groups


def _row_change(r: tuple[Any, ...]) -> ChangeSet:
    items = tuple(Item.from_json(i) for i in json.loads(r[6]))
    return ChangeSet(r[0], r[1], r[2], r[3], r[4], r[5], items, r[7])


def wall_iso(hlc: int) -> str:
    """The wall time of an HLC value as ISO 8601 UTC with milliseconds."""
    ms = hlc >> 16
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"
