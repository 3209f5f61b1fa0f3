"""Row-level access shared by the local write path and replication (inside the writer's transaction)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from thinsync.model.registry import KINDS
from thinsync.model.validate import index_keys, ref_targets, unique_keys
from thinsync.store.changes import ChangeSet, Item
from thinsync.store.stamps import EMPTY, State

CHANGE_COLUMNS = "id, origin, seq, hlc, author, summary, items, applied_at"


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def row_state(row: tuple[str, str, str | None] | None) -> State:
    if row is None:
        return EMPTY
    vals, stamps, tomb = row
    return State(vals=json.loads(vals), stamps=json.loads(stamps), tomb=tomb)


def read_state(conn: sqlite3.Connection, kind: str, name: str) -> State:
    row = conn.execute("SELECT vals, stamps, tomb FROM objects WHERE kind=? AND name=?", (kind, name)).fetchone()
    return row_state(row)


def row_change(r: tuple[Any, ...]) -> ChangeSet:
    items = tuple(Item.from_json(i) for i in json.loads(r[6]))
    return ChangeSet(r[0], r[1], r[2], r[3], r[4], r[5], items, r[7])


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


def write_object(
    conn: sqlite3.Connection, kind: str, name: str, state: State, stamp: str, *, fresh: bool = False
) -> None:
    """Store a state and keep the reference and unique-key indexes in step with it.

    `fresh`: the caller read no row for this object in this transaction, so it has no index rows to
    drop (they go whenever its row does, or as it dies)."""
    spec = KINDS[kind]
    conn.execute(
        "INSERT INTO objects (kind, name, vals, stamps, tomb, version, live, created) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (kind, name) DO UPDATE SET vals=excluded.vals, stamps=excluded.stamps, "
        "tomb=excluded.tomb, version=excluded.version, live=excluded.live, "
        "created=CASE WHEN objects.live=0 AND excluded.live=1 THEN excluded.created "
        "ELSE min(objects.created, excluded.created) END",
        (kind, name, dumps(state.vals), dumps(state.stamps), state.tomb, state.version, int(state.live), stamp),
    )
    # A kind without references or keys never has rows in these indexes: nothing to drop or add.
    if spec.refs and not fresh:
        conn.execute("DELETE FROM refs WHERE kind=? AND name=?", (kind, name))
    if (spec.uniques or spec.indexes) and not fresh:
        conn.execute("DELETE FROM uniques WHERE kind=? AND name=?", (kind, name))
    if state.live and spec.refs:
        conn.executemany(
            "INSERT OR IGNORE INTO refs (target_kind, target_name, kind, name) VALUES (?, ?, ?, ?)",
            [(tk, tn, kind, name) for tk, tn in ref_targets(spec, dict(state.vals))],
        )
    if state.live and (spec.uniques or spec.indexes):
        conn.executemany(
            "INSERT OR IGNORE INTO uniques (kind, label, value, name) VALUES (?, ?, ?, ?)",
            [
                (kind, label, value, name)
                for label, value in (*unique_keys(spec, dict(state.vals)), *index_keys(spec, dict(state.vals)))
            ],
        )


def append_change(conn: sqlite3.Connection, change: ChangeSet, *, track_origin: bool = True) -> ChangeSet:
    """Append a change set to the log; returns it with its local log position.

    `track_origin=False`: the caller raises the origin's seq itself (once per batch, `raise_origins`)."""
    cursor = conn.execute(
        "INSERT INTO changes (origin, seq, hlc, author, summary, items, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (change.origin, change.seq, change.hlc, change.author, change.summary, change.items_json(), change.applied_at),
    )
    change_id = int(cursor.lastrowid or 0)
    if track_origin:
        raise_origins(conn, {change.origin: change.seq})
    conn.executemany(
        "INSERT OR IGNORE INTO change_objects (kind, name, change_id) VALUES (?, ?, ?)",
        [(i.kind, i.name, change_id) for i in change.items],
    )
    return ChangeSet(
        change_id, change.origin, change.seq, change.hlc, change.author, change.summary, change.items, change.applied_at
    )


def raise_origins(conn: sqlite3.Connection, vector: dict[str, int]) -> None:
    """Record that the log holds every change of each origin up to its seq (never lowered)."""
    conn.executemany(
        "INSERT INTO origins (origin, seq) VALUES (?, ?) ON CONFLICT (origin) DO UPDATE SET seq=max(seq, excluded.seq)",
        list(vector.items()),
    )


def accounts(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    admins = [json.loads(r[0]) for r in conn.execute("SELECT vals FROM objects WHERE kind='admins' AND live=1")]
    groups = {
        r[0]: json.loads(r[1])
        for r in conn.execute("SELECT name, vals FROM objects WHERE kind='security-groups' AND live=1")
    }
    return admins, groups


def next_seq(conn: sqlite3.Connection, origin: str) -> int:
    row = conn.execute("SELECT seq FROM origins WHERE origin=?", (origin,)).fetchone()
    return int(row[0]) + 1 if row else 1


def vector(conn: sqlite3.Connection) -> dict[str, int]:
    """{origin: highest seq held}; changes of an origin are applied in seq order, so it is contiguous."""
    return {origin: int(seq) for origin, seq in conn.execute("SELECT origin, seq FROM origins")}
