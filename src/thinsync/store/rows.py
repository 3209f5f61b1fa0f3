"""Row-level access shared by the local write path and replication (inside the writer's transaction)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from thinsync import jsonfmt
from thinsync.model.registry import KINDS
from thinsync.model.validate import index_keys, ref_targets, unique_keys
from thinsync.store.changes import ChangeSet, Item
from thinsync.store.stamps import EMPTY, State

CHANGE_COLUMNS = "id, origin, seq, hlc, author, summary, items, applied_at"
Key = tuple[str, str]
# Names per `IN (...)` lookup (well under SQLite's limit on bound parameters).
LOOKUP_CHUNK = 500


def dumps(value: Any) -> str:
    return jsonfmt.dumps(value, sort_keys=True)


def row_state(row: tuple[str, str, str | None] | None) -> State:
    if row is None:
        return EMPTY
    vals, stamps, tomb = row
    return State(vals=jsonfmt.loads(vals), stamps=jsonfmt.loads(stamps), tomb=tomb)


def read_state(conn: sqlite3.Connection, kind: str, name: str) -> State:
    row = conn.execute("SELECT vals, stamps, tomb FROM objects WHERE kind=? AND name=?", (kind, name)).fetchone()
    return row_state(row)


def row_change(r: tuple[Any, ...]) -> ChangeSet:
    items = tuple(Item.from_json(i) for i in jsonfmt.loads(r[6]))
    return ChangeSet(r[0], r[1], r[2], r[3], r[4], r[5], items, r[7], r[6])


class TxLookup:
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


def _by_kind(keys: Iterable[tuple[str, str]]) -> Iterable[tuple[str, list[str]]]:
    """Names grouped by kind, in chunks small enough for one `IN (...)` lookup each."""
    by_kind: dict[str, dict[str, None]] = {}
    for kind, name in keys:
        by_kind.setdefault(kind, {})[name] = None
    for kind, names in by_kind.items():
        unique = list(names)
        for start in range(0, len(unique), LOOKUP_CHUNK):
            yield kind, unique[start : start + LOOKUP_CHUNK]


def read_rows(conn: sqlite3.Connection, keys: Iterable[tuple[str, str]], columns: str) -> dict[Key, tuple[Any, ...]]:
    """`columns` of many objects' rows in a few queries (absent objects are missing from the result)."""
    found: dict[Key, tuple[Any, ...]] = {}
    for kind, names in _by_kind(keys):
        marks = ",".join("?" * len(names))
        for row in conn.execute(
            f"SELECT name, {columns} FROM objects WHERE kind=? AND name IN ({marks})", (kind, *names)
        ):
            found[(kind, row[0])] = row[1:]
    return found


def read_states(conn: sqlite3.Connection, keys: Iterable[Key]) -> dict[Key, State]:
    """The stored states of many objects (absent ones are missing from the result)."""
    return {
        key: State(vals=jsonfmt.loads(vals), stamps=jsonfmt.loads(stamps), tomb=tomb)
        for key, (vals, stamps, tomb) in read_rows(conn, keys, "vals, stamps, tomb").items()
    }


def referrers_of(conn: sqlite3.Connection, keys: Iterable[Key]) -> set[Key]:
    """Every object that references one of these."""
    found: set[Key] = set()
    for kind, names in _by_kind(keys):
        marks = ",".join("?" * len(names))
        found.update(
            conn.execute(
                f"SELECT kind, name FROM refs WHERE target_kind=? AND target_name IN ({marks})", (kind, *names)
            )
        )
    return found


class ObjectWrites:
    """Object writes of one transaction, sent to SQLite together (a few `executemany` calls instead of
    several statements per object). Writes of one object never share a flush, so each object's index
    rows are dropped before its new ones go in; `flush()` before anything reads the objects, the
    reference or the unique-key index."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._reset()

    def _reset(self) -> None:
        self._keys: set[tuple[str, str]] = set()
        self._objects: list[tuple[Any, ...]] = []
        self._drop_refs: list[tuple[str, str]] = []
        self._drop_uniques: list[tuple[str, str]] = []
        self._refs: list[tuple[str, str, str, str]] = []
        self._uniques: list[tuple[str, str, str, str]] = []

    def write(self, kind: str, name: str, state: State, stamp: str, *, fresh: bool = False) -> None:
        """Queue a state; keeps the reference and unique-key indexes in step with it.

        `fresh`: the caller read no row for this object in this transaction, so it has no index rows to
        drop (they go whenever its row does, or as it dies)."""
        key = (kind, name)
        if key in self._keys:
            self.flush()
        self._keys.add(key)
        spec = KINDS[kind]
        live = state.live
        self._objects.append(
            (kind, name, dumps(state.vals), dumps(state.stamps), state.tomb, state.version, int(live), stamp)
        )
        # A kind without references or keys never has rows in these indexes: nothing to drop or add.
        if spec.refs and not fresh:
            self._drop_refs.append(key)
        if (spec.uniques or spec.indexes) and not fresh:
            self._drop_uniques.append(key)
        if live and spec.refs:
            self._refs.extend((tk, tn, kind, name) for tk, tn in ref_targets(spec, dict(state.vals)))
        if live and (spec.uniques or spec.indexes):
            vals = dict(state.vals)
            self._uniques.extend(
                (kind, label, value, name) for label, value in (*unique_keys(spec, vals), *index_keys(spec, vals))
            )

    def flush(self) -> None:
        if not self._keys:
            return
        conn = self._conn
        conn.executemany(
            "INSERT INTO objects (kind, name, vals, stamps, tomb, version, live, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, name) DO UPDATE SET vals=excluded.vals, stamps=excluded.stamps, "
            "tomb=excluded.tomb, version=excluded.version, live=excluded.live, "
            "created=CASE WHEN objects.live=0 AND excluded.live=1 THEN excluded.created "
            "ELSE min(objects.created, excluded.created) END",
            self._objects,
        )
        if self._drop_refs:
            conn.executemany("DELETE FROM refs WHERE kind=? AND name=?", self._drop_refs)
        if self._drop_uniques:
            conn.executemany("DELETE FROM uniques WHERE kind=? AND name=?", self._drop_uniques)
        if self._refs:
            conn.executemany(
                "INSERT OR IGNORE INTO refs (target_kind, target_name, kind, name) VALUES (?, ?, ?, ?)", self._refs
            )
        if self._uniques:
            conn.executemany(
                "INSERT OR IGNORE INTO uniques (kind, label, value, name) VALUES (?, ?, ?, ?)", self._uniques
            )
        self._reset()


def write_object(
    conn: sqlite3.Connection, kind: str, name: str, state: State, stamp: str, *, fresh: bool = False
) -> None:
    """Store one state now (see `ObjectWrites.write`)."""
    writes = ObjectWrites(conn)
    writes.write(kind, name, state, stamp, fresh=fresh)
    writes.flush()


def append_changes(conn: sqlite3.Connection, changes: list[ChangeSet], applied_at: float) -> list[ChangeSet]:
    """Append change sets to the log together, applied at `applied_at`; returns them with their local
    log positions. The caller raises the origins' seqs (`raise_origins`)."""
    if not changes:
        return []
    first = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM changes").fetchone()[0]) + 1
    stored: list[ChangeSet] = []
    log_rows: list[tuple[Any, ...]] = []
    object_rows: list[tuple[str, str, int]] = []
    for position, c in enumerate(changes, first):
        raw = c.items_json()
        stored.append(ChangeSet(position, c.origin, c.seq, c.hlc, c.author, c.summary, c.items, applied_at, raw))
        log_rows.append((position, c.origin, c.seq, c.hlc, c.author, c.summary, raw, applied_at))
        for item in c.items:
            object_rows.append((item.kind, item.name, position))
    conn.executemany(
        "INSERT INTO changes (id, origin, seq, hlc, author, summary, items, applied_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        log_rows,
    )
    conn.executemany("INSERT OR IGNORE INTO change_objects (kind, name, change_id) VALUES (?, ?, ?)", object_rows)
    return stored


def append_change(conn: sqlite3.Connection, change: ChangeSet) -> ChangeSet:
    """Append one change set to the log and raise its origin's seq; returns it with its log position."""
    stored = append_changes(conn, [change], change.applied_at)[0]
    raise_origins(conn, {change.origin: change.seq})
    return stored


def raise_origins(conn: sqlite3.Connection, vector: dict[str, int]) -> None:
    """Record that the log holds every change of each origin up to its seq (never lowered)."""
    conn.executemany(
        "INSERT INTO origins (origin, seq) VALUES (?, ?) ON CONFLICT (origin) DO UPDATE SET seq=max(seq, excluded.seq)",
        list(vector.items()),
    )


def accounts(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    admins = [jsonfmt.loads(r[0]) for r in conn.execute("SELECT vals FROM objects WHERE kind='admins' AND live=1")]
    groups = {
        r[0]: jsonfmt.loads(r[1])
        for r in conn.execute("SELECT name, vals FROM objects WHERE kind='security-groups' AND live=1")
    }
    return admins, groups


def next_seq(conn: sqlite3.Connection, origin: str) -> int:
    row = conn.execute("SELECT seq FROM origins WHERE origin=?", (origin,)).fetchone()
    return int(row[0]) + 1 if row else 1


def vector(conn: sqlite3.Connection) -> dict[str, int]:
    """{origin: highest seq held}; changes of an origin are applied in seq order, so it is contiguous."""
    return {origin: int(seq) for origin, seq in conn.execute("SELECT origin, seq FROM origins")}
