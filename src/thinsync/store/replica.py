"""Replication in the store: apply remote change sets, version vectors, log pages, snapshots, digests.

Everything here runs inside the writer's transaction (writes) or a read transaction (reads).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from thinsync import jsonfmt
from thinsync.errors import ThinsyncError
from thinsync.store import conflicts, rows
from thinsync.store.changes import ChangeSet
from thinsync.store.digest import Digest, bucket_of
from thinsync.store.hlc import HLC, hlc_from_ms, hlc_ms, make_stamp, wall_iso
from thinsync.store.stamps import EMPTY, State, merge, merge_change

Key = tuple[str, str]


class GapError(ThinsyncError):
    """A change set arrived before an earlier one of the same origin: the stream must restart."""

    status = 409
    code = "sync_gap"


class SkewError(ThinsyncError):
    """A change set is stamped too far ahead of this server's clock to be applied."""

    status = 409
    code = "clock_skew"


@dataclass
class Applied:
    applied: list[ChangeSet] = field(default_factory=list)
    skipped: int = 0
    conflicts: int = 0
    after_commit: Callable[[], None] | None = None
    # The highest seq of each origin in the batch received, and this server's vector after it.
    received: dict[str, int] = field(default_factory=dict)
    vector: dict[str, int] = field(default_factory=dict)


def apply_remote(
    conn: sqlite3.Connection, sets: list[ChangeSet], hlc: HLC, now: float, max_skew_s: float, origin: str
) -> Applied:
    """Merge change sets from another server in log order; already-held (origin, seq) are no-ops.

    Conflicts noticed on the way are recorded in one change set of this server (`origin`), appended
    after the batch, so the records replicate like any change.
    """
    vv = rows.vector(conn)
    result = Applied()
    touched: set[Key] = set()
    befores: list[tuple[str, str, State]] = []
    pending = conflicts.Pending()
    origins: set[str] = set()
    # Closing superseded conflicts needs an open one (indexed): usually there is none to look for.
    settling = conflicts.any_open(conn)
    at = wall_iso(hlc_from_ms(int(now * 1000)))
    limit_ms = int((now + max_skew_s) * 1000)
    # Every object the batch touches is read once up front; `states` then follows the batch's writes.
    states = rows.read_states(conn, ((i.kind, i.name) for change in sets for i in change.items))
    writes = rows.ObjectWrites(conn)
    logged: list[ChangeSet] = []
    for change in sets:
        have = vv.get(change.origin, 0)
        if change.seq <= have:
            result.skipped += 1
            continue
        if change.seq != have + 1:
            raise GapError(f"change {change.origin}#{change.seq} arrived before #{have + 1}; restarting the stream")
        if hlc_ms(change.hlc) > limit_ms:
            ahead = (hlc_ms(change.hlc) - now * 1000) / 1000
            raise SkewError(
                f"a change from {change.origin} is stamped {ahead:.0f} s ahead of this server's clock "
                f"(limit {max_skew_s:.0f} s); check the clocks (NTP) of both servers"
            )
        hlc.observe(change.hlc)
        stamp = change.stamp
        for item in change.items:
            key = (item.kind, item.name)
            before = states.get(key, EMPTY)
            befores.append((item.kind, item.name, before))
            found = conflicts.detect(before, item, stamp)
            if found:
                writes.flush()
                conflicts.open_records(conn, found, pending)
            after, changed = merge_change(before, stamp, item.set, item.delete)
            if changed:
                writes.write(item.kind, item.name, after, stamp, fresh=before is EMPTY)
                states[key] = after
            # An incoming conflict record may be an open one that a later item of the batch continues.
            settling = settling or item.kind == conflicts.KIND
            if settling:
                writes.flush()
                conflicts.settle(conn, item, pending, at, change.author)
            touched.add(key)
        logged.append(change)
        vv[change.origin] = change.seq
        origins.add(change.origin)
    writes.flush()
    result.applied.extend(rows.append_changes(conn, logged, now))
    # The vector moves once per batch (before the local conflict record takes its own seq).
    rows.raise_origins(conn, {o: vv[o] for o in origins})
    if touched:
        conflicts.refresh_problems(conn, touched, pending, at, known=states, befores=befores)
    if pending:
        result.conflicts = len(pending.opened)
        result.applied.append(_record_locally(conn, pending, hlc, origin, now))
    return result


def _record_locally(
    conn: sqlite3.Connection, pending: conflicts.Pending, hlc: HLC, origin: str, now: float
) -> ChangeSet:
    value = hlc.now()
    items = conflicts.write_pending(conn, pending, make_stamp(value, origin), skip=set())
    summary = f"{len(pending.opened)} conflicts recorded, {len(pending.closed)} closed"
    draft = ChangeSet(0, origin, rows.next_seq(conn, origin), value, "thinsync sync", summary, tuple(items), now)
    return rows.append_change(conn, draft)


def first_missing_id(conn: sqlite3.Connection, theirs: dict[str, int]) -> int:
    """The lowest local log position holding a change the other server lacks (0 when unknown)."""
    lowest: int | None = None
    for origin, seq in rows.vector(conn).items():
        if seq <= theirs.get(origin, 0):
            continue
        row = conn.execute(
            "SELECT MIN(id) FROM changes WHERE origin=? AND seq>?", (origin, theirs.get(origin, 0))
        ).fetchone()
        if row[0] is not None:
            lowest = row[0] if lowest is None else min(lowest, row[0])
    return (lowest - 1) if lowest is not None else max_id(conn)


def max_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM changes").fetchone()[0])


def log_page(
    conn: sqlite3.Connection, after_id: int, theirs: dict[str, int], limit: int, held_origin: str | None = None
) -> tuple[list[ChangeSet], int]:
    """Up to `limit` change sets after local position `after_id` that `theirs` lacks, and the new position.

    `held_origin` (the origin the other server writes under now) is held there whole: none of it is sent."""
    out: list[ChangeSet] = []
    position = after_id
    while len(out) < limit:
        batch = conn.execute(
            f"SELECT {rows.CHANGE_COLUMNS} FROM changes WHERE id>? ORDER BY id LIMIT ?", (position, limit * 2)
        ).fetchall()
        if not batch:
            break
        for row in batch:
            position = row[0]
            if row[2] > theirs.get(row[1], 0) and row[1] != held_origin:
                out.append(rows.row_change(row))
                if len(out) >= limit:
                    break
    return out, position


def lacks_history(conn: sqlite3.Connection, theirs: dict[str, int]) -> bool:
    """True when the other server needs changes this log no longer holds (it was truncated or installed
    from a snapshot): it must get a snapshot first."""
    for origin, seq in rows.vector(conn).items():
        have = theirs.get(origin, 0)
        if seq <= have:
            continue
        held = conn.execute("SELECT COUNT(*) FROM changes WHERE origin=? AND seq>?", (origin, have)).fetchone()[0]
        if held != seq - have:
            return True
    return False


def snapshot(conn: sqlite3.Connection, encoded: bool = False) -> dict[str, Any]:
    """Every stamped object and tombstone, with the vector it reflects (one read transaction).

    `encoded`: each object's values and stamps stay the JSON text the row holds (`jsonfmt.Encoded`),
    for a sender that encodes the snapshot with `jsonfmt` at once: they are not parsed here only to be
    encoded again (the link's catch-up; the receiver reads the same JSON either way)."""
    text = jsonfmt.Encoded if encoded else jsonfmt.loads
    objects = [
        {"kind": k, "name": n, "vals": text(v), "stamps": text(s), "tomb": t, "created": c}
        for k, n, v, s, t, c in conn.execute("SELECT kind, name, vals, stamps, tomb, created FROM objects")
    ]
    return {"objects": objects, "vector": rows.vector(conn)}


def _state(obj: dict[str, Any]) -> State:
    return State(vals=obj["vals"], stamps=obj["stamps"], tomb=obj.get("tomb"))


def merge_objects(conn: sqlite3.Connection, objects: list[dict[str, Any]], now: float) -> int:
    """Merge stamped objects (a snapshot or a repair) by the per-field rule; returns how many changed."""
    changed: set[Key] = set()
    befores: list[tuple[str, str, State]] = []
    states = rows.read_states(conn, ((o["kind"], o["name"]) for o in objects))
    writes = rows.ObjectWrites(conn)
    for obj in objects:
        key = (obj["kind"], obj["name"])
        before = states.get(key, EMPTY)
        incoming = _state(obj)
        # merge(EMPTY, s) is s itself when every value has its stamp: an object this server lacks
        # (all of them on a fresh server) is taken as it came.
        if before is EMPTY and incoming.vals.keys() == incoming.stamps.keys():
            after = incoming
        else:
            after = merge(before, incoming)
        if after != before:
            befores.append((obj["kind"], obj["name"], before))
            created = obj.get("created") or after.version
            writes.write(obj["kind"], obj["name"], after, created, fresh=before is EMPTY)
            states[key] = after
            changed.add(key)
    writes.flush()
    if changed:
        pending = conflicts.Pending()
        conflicts.refresh_problems(conn, changed, pending, "", known=states, befores=befores)
        # Validity is derived from the merged state; records of it arrive with the next changes.
    return len(changed)


def raise_vector(conn: sqlite3.Connection, vector: dict[str, int]) -> None:
    """Record that the state now includes every change up to `vector` (after a snapshot merge)."""
    for origin, seq in vector.items():
        conn.execute(
            "INSERT INTO origins (origin, seq) VALUES (?, ?) "
            "ON CONFLICT (origin) DO UPDATE SET seq=max(seq, excluded.seq)",
            (origin, seq),
        )


def replace_all(conn: sqlite3.Connection, snap: dict[str, Any], now: float) -> None:
    """Drop this server's configuration and log and install another server's snapshot (pairing)."""
    for table in ("objects", "changes", "change_objects", "refs", "uniques", "origins"):
        conn.execute(f"DELETE FROM {table}")
    writes = rows.ObjectWrites(conn)
    for obj in snap["objects"]:
        state = _state(obj)
        writes.write(obj["kind"], obj["name"], state, obj.get("created") or state.version)
    writes.flush()
    raise_vector(conn, snap["vector"])
    keys = {(o["kind"], o["name"]) for o in snap["objects"]}
    conflicts.refresh_problems(conn, keys, conflicts.Pending(), "")


def digest_at(conn: sqlite3.Connection) -> tuple[Digest, dict[str, int]]:
    """The digest and the vector it was computed at (one read transaction)."""
    return digest(conn), rows.vector(conn)


def digest(conn: sqlite3.Connection) -> Digest:
    d = Digest()
    for k, n, v, s, t in conn.execute("SELECT kind, name, vals, stamps, tomb FROM objects"):
        d.add(k, n, jsonfmt.loads(v), jsonfmt.loads(s), t)
    return d


def objects_in_buckets(conn: sqlite3.Connection, buckets: set[int]) -> list[dict[str, Any]]:
    out = []
    for k, n, v, s, t, c in conn.execute("SELECT kind, name, vals, stamps, tomb, created FROM objects"):
        if bucket_of(k, n) in buckets:
            out.append(
                {"kind": k, "name": n, "vals": jsonfmt.loads(v), "stamps": jsonfmt.loads(s), "tomb": t, "created": c}
            )
    return out


def collect_tombstones(conn: sqlite3.Connection, covered: dict[str, int]) -> int:
    """Remove deleted objects whose deleting change every member holds (`covered` is the minimum of
    all members' vectors); returns how many were removed."""
    removed = 0
    dead = conn.execute("SELECT kind, name, tomb FROM objects WHERE live=0").fetchall()
    for kind, name, tomb in dead:
        origin = tomb[17:]
        row = conn.execute(
            "SELECT c.seq FROM change_objects o JOIN changes c ON c.id=o.change_id "
            "WHERE o.kind=? AND o.name=? AND c.origin=? AND c.hlc=? LIMIT 1",
            (kind, name, origin, int(tomb[:16], 16)),
        ).fetchone()
        if row is not None and covered.get(origin, 0) >= row[0]:
            conn.execute("DELETE FROM objects WHERE kind=? AND name=?", (kind, name))
            removed += 1
    return removed
