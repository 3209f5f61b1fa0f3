"""Conflicts and validity after merge, recorded as replicated `conflicts` objects.

Field conflicts: an incoming change set a field that this server had changed concurrently (its
stamp is not the one the writer saw). The merge has already decided (higher stamp wins); the
record keeps both values so an operator can keep the other one. The record's id is derived from
the two stamps, and the record itself is written as a change set of this server, so it replicates:
every server ends up with the same inbox whichever of them noticed the conflict first.

A conflict closes when an operator resolves it (an ordinary change that also closes it), when the
losing side's writer continues its own line (a later change whose base is the losing stamp:
`superseded`), or, for validity conflicts, when the break is gone (`fixed`). Closing sets only the
`closed` field, which no opening ever writes, so a late duplicate opening cannot reopen it.

Validity: breaks only a merge can create (a reference to a deleted object, one MAC on two
terminals) are computed from the merged state, stored on the object (`objects.problems`) and
recorded as conflicts of field `validity`.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from thinsync import jsonfmt
from thinsync.model.registry import KINDS, OPEN_LOSER
from thinsync.model.validate import ref_targets, unique_keys
from thinsync.store import rows
from thinsync.store.changes import Item
from thinsync.store.stamps import State, apply

Key = tuple[str, str]
KIND = "conflicts"
DELETED = "(deleted)"
# Kinds some other kind can reference: only their objects can have referrers to re-check.
REFERENCED = frozenset(ref.target for spec in KINDS.values() for ref in spec.refs)
# Kinds whose objects can be invalid after a merge (they hold references or unique keys).
CHECKED = frozenset(name for name, spec in KINDS.items() if spec.refs or spec.uniques)
# Unique-key labels per kind (the index also holds lookup keys, which are not unique).
UNIQUE_LABELS = frozenset((name, u.label) for name, spec in KINDS.items() for u in spec.uniques)
# Validity checks over this many objects (a snapshot merge or a large repair; never a page of changes)
# recompute the whole store from its reference and unique-key indexes in two queries instead of asking
# per object; the result is the same (`tests/unit/test_validity.py`).
WHOLE_STORE_FROM = 20_000


def conflict_id(kind: str, name: str, field_name: str, *parts: str) -> str:
    text = "\x00".join([kind, name, field_name, *sorted(parts)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Pending:
    """Conflict records to open or close, written together at the end of a transaction."""

    opened: dict[str, dict[str, Any]] = field(default_factory=dict)
    closed: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.opened or self.closed)


def detect(before: State, item: Item, stamp: str) -> list[dict[str, Any]]:
    """Conflicts an incoming item creates against the receiver's state before it is merged."""
    found: list[dict[str, Any]] = []
    if not before.stamps or item.kind == KIND:
        return found
    if item.delete:
        seen = item.base or ""
        if before.live and any(s > seen for s in before.stamps.values()):
            latest = max(before.stamps.values())
            found.append(_record(item, "*", (latest, "(changed)"), (stamp, DELETED)))
        return found
    unseen_delete = before.tomb is not None and before.tomb > (item.base_tomb or "")
    if unseen_delete and (not before.live or (before.tomb or "") > max(before.stamps.values())):
        found.append(_record(item, "*", (before.tomb or "", DELETED), (stamp, "(changed)")))
    for field_name, value in item.set.items():
        if field_name not in item.bases:
            continue
        mine = before.stamps.get(field_name)
        if mine is None or mine == stamp or mine == item.bases[field_name]:
            continue
        if before.vals.get(field_name) == value:
            continue  # both sides wrote the same value (two servers auto-creating one terminal): no choice
        found.append(_record(item, field_name, (mine, before.vals.get(field_name)), (stamp, value)))
    return found


def _record(item: Item, field_name: str, a: tuple[str, Any], b: tuple[str, Any]) -> dict[str, Any]:
    (s1, v1), (s2, v2) = sorted([a, b], key=lambda e: e[0])
    return {
        "name": conflict_id(item.kind, item.name, field_name, s1, s2),
        "target_kind": item.kind,
        "target_name": item.name,
        "field": field_name,
        "entries": [{"stamp": s2, "value": v2}, {"stamp": s1, "value": v1}],
        "winner": s2,
        "loser": s1,
    }


def open_records(conn: sqlite3.Connection, found: Iterable[dict[str, Any]], pending: Pending) -> None:
    for record in found:
        if record["name"] in pending.opened or rows.read_state(conn, KIND, record["name"]).live:
            continue
        pending.opened[record["name"]] = {k: v for k, v in record.items() if k != "name"}


def settle(conn: sqlite3.Connection, item: Item, pending: Pending, at: str, by: str) -> None:
    """Close the open conflicts whose losing write this item continues (its base is the losing stamp)."""
    lookup = rows.TxLookup(conn)
    for name, base in item.bases.items():
        if base is None:
            continue
        key = "\x00".join([item.kind, item.name, name, base])
        for conflict in lookup.holders(KIND, OPEN_LOSER, key):
            pending.closed.setdefault(conflict, {"state": "superseded", "at": at, "by": by})


def any_problems(conn: sqlite3.Connection) -> bool:
    """True when some object is marked invalid after a merge."""
    return conn.execute("SELECT 1 FROM objects WHERE problems IS NOT NULL LIMIT 1").fetchone() is not None


def any_open(conn: sqlite3.Connection) -> bool:
    """True when some field conflict is open (indexed under its losing stamp)."""
    return (
        conn.execute("SELECT 1 FROM uniques WHERE kind=? AND label=? LIMIT 1", (KIND, OPEN_LOSER)).fetchone()
        is not None
    )


def related_keys(
    conn: sqlite3.Connection, befores: Iterable[tuple[str, str, State]], referrers: bool = True
) -> set[Key]:
    """Objects whose validity may change with these: referrers and holders of the same unique keys.

    `referrers=False` when the objects are already written and go to `refresh_problems`, which reads
    their (then identical) referrers itself."""
    lookup = rows.TxLookup(conn)
    related: set[Key] = set()
    for kind, name, before in befores:
        if referrers and kind in REFERENCED:
            related.update(lookup.referrers(kind, name))
        if before.live and KINDS[kind].uniques:
            for label, value in unique_keys(KINDS[kind], dict(before.vals)):
                related.update((kind, n) for n in lookup.holders(kind, label, value))
    return related


def problems_of(
    lookup: rows.TxLookup,
    kind: str,
    name: str,
    vals: dict[str, Any],
    keys: Iterable[tuple[str, str]] | None = None,
) -> list[str]:
    """Why the object is invalid (none: valid); `keys`: its unique keys, when the caller has them."""
    spec = KINDS[kind]
    found: list[str] = []
    for target_kind, target in ref_targets(spec, vals):
        if (target_kind, target) != (kind, name) and not lookup.exists(target_kind, target):
            found.append(_missing(target_kind, target))
    for label, value in unique_keys(spec, vals) if keys is None else keys:
        others = sorted(n for n in lookup.holders(kind, label, value) if n != name)
        if others:
            found.append(_shared(kind, label, value, others[0]))
    return sorted(set(found))


def _missing(target_kind: str, target: str) -> str:
    return f"refers to {KINDS[target_kind].title} '{target}', which does not exist"


def _shared(kind: str, label: str, value: str, other: str) -> str:
    return f"{label} {value} is also used by {KINDS[kind].title} '{other}'"


def all_problems(conn: sqlite3.Connection) -> dict[Key, list[str]]:
    """Every live object's problems, from the reference and unique-key indexes (which hold exactly the
    references and keys of the live objects): what `problems_of` gives each of them, in two queries."""
    found: dict[Key, set[str]] = {}
    for kind, name, target_kind, target in conn.execute(
        "SELECT r.kind, r.name, r.target_kind, r.target_name FROM refs r "
        "WHERE NOT (r.kind = r.target_kind AND r.name = r.target_name) AND NOT EXISTS "
        "(SELECT 1 FROM objects o WHERE o.kind = r.target_kind AND o.name = r.target_name AND o.live = 1)"
    ):
        found.setdefault((kind, name), set()).add(_missing(target_kind, target))
    holders: dict[tuple[str, str, str], list[str]] = {}
    for kind, label, value, name in conn.execute(
        "SELECT u.kind, u.label, u.value, u.name FROM uniques u WHERE EXISTS (SELECT 1 FROM uniques v "
        "WHERE v.kind = u.kind AND v.label = u.label AND v.value = u.value AND v.name <> u.name)"
    ):
        if (kind, label) in UNIQUE_LABELS:
            holders.setdefault((kind, label, value), []).append(name)
    for (kind, label, value), names in holders.items():
        names.sort()
        for name in names:
            other = names[1] if name == names[0] else names[0]
            found.setdefault((kind, name), set()).add(_shared(kind, label, value, other))
    return {key: sorted(reasons) for key, reasons in found.items()}


def refresh_problems(
    conn: sqlite3.Connection,
    keys: Iterable[Key],
    pending: Pending,
    at: str,
    known: dict[Key, State] | None = None,
    befores: Iterable[tuple[str, str, State]] | None = None,
) -> None:
    """Recompute the validity of these objects and of the objects related to them.

    `known`: states the caller has just written (so their rows need not be read back).
    `befores`: (kind, name, state before) of the objects the caller wrote, the first one of each being
    its state before the transaction; `known` then holds their states after. Holders of the unique keys
    they had are checked too, and since a reference is broken only by its target not existing, only the
    referrers of those that became live or stopped being live are re-checked. Without it, every
    referrer of `keys` is."""
    todo = {k for k in keys if k[0] != KIND}
    # The problems stored now: a partial index lists the objects that have any (usually none).
    marked = {
        (k, n): p for k, n, p in conn.execute("SELECT kind, name, problems FROM objects WHERE problems IS NOT NULL")
    }
    if len(todo) >= WHOLE_STORE_FROM:
        everywhere = all_problems(conn)
        for key in sorted(k for k in everywhere.keys() | marked.keys() if k[0] != KIND):
            _store_problems(conn, key, everywhere.get(key, []), marked.get(key), pending, at)
        return
    known = known or {}
    lookup = rows.TxLookup(conn)
    targets: set[Key] = todo
    if befores is not None:
        befores = list(befores)
        todo |= {k for k in related_keys(conn, befores, referrers=False) if k[0] != KIND}
        initially: dict[Key, State] = {}
        for kind, name, before in befores:
            initially.setdefault((kind, name), before)
        targets = {k for k, before in initially.items() if k not in known or known[k].live != before.live}
    # Rows and referrers are read in a few batched queries (nothing writes in between).
    todo.update(rows.referrers_of(conn, (k for k in targets if k[0] in REFERENCED)))
    # Objects of a kind without references or unique keys cannot have problems: skipped unless marked.
    todo = {k for k in todo if k[0] in CHECKED or k in marked}
    # key -> (values, live, stored problems as JSON or None)
    found: dict[Key, tuple[Any, Any, str | None]] = {}

    def read(wanted: set[Key]) -> None:
        for key in wanted:
            state = known.get(key)
            if state is not None:
                found[key] = (state.vals, state.live, marked.get(key))
        missing = {k for k in wanted if k not in found}
        for key, (vals, live, problems) in rows.read_rows(conn, missing, "vals, live, problems").items():
            found[key] = (jsonfmt.loads(vals), live, problems)

    read(todo)
    # Holders of the same unique keys are checked too; each object's keys are computed once.
    keys_of: dict[Key, list[tuple[str, str]]] = {}
    for key, (vals, live, _problems) in list(found.items()):
        kind = key[0]
        if live and KINDS[kind].uniques:
            keys_of[key] = held = list(unique_keys(KINDS[kind], vals))
            for label, value in held:
                todo.update((kind, n) for n in lookup.holders(kind, label, value))
    read(todo - found.keys())
    for key in sorted(todo):
        if key not in found:
            continue
        vals, live, stored_json = found[key]
        spec = KINDS[key[0]]
        # Only references and unique keys make problems.
        current = (
            problems_of(lookup, key[0], key[1], vals, keys_of.get(key)) if live and (spec.refs or spec.uniques) else []
        )
        _store_problems(conn, key, current, stored_json, pending, at)


def _store_problems(
    conn: sqlite3.Connection, key: Key, current: list[str], stored_json: str | None, pending: Pending, at: str
) -> None:
    """Store an object's problems when they changed, and open or close their conflict records."""
    stored = jsonfmt.loads(stored_json) if stored_json else []
    if current == stored:
        return
    kind, name = key
    conn.execute(
        "UPDATE objects SET problems=? WHERE kind=? AND name=?",
        (rows.dumps(current) if current else None, kind, name),
    )
    for reason in set(stored) - set(current):
        conflict = conflict_id(kind, name, "validity", reason)
        if rows.read_state(conn, KIND, conflict).live:
            pending.closed.setdefault(conflict, {"state": "fixed", "at": at, "by": ""})
    for reason in set(current) - set(stored):
        conflict = conflict_id(kind, name, "validity", reason)
        pending.closed.pop(conflict, None)
        pending.opened[conflict] = {
            "target_kind": kind,
            "target_name": name,
            "field": "validity",
            "entries": [{"stamp": None, "value": reason}],
            "winner": None,
            "loser": None,
            "closed": None,  # a break that comes back reopens its record
        }


def write_pending(conn: sqlite3.Connection, pending: Pending, stamp: str, skip: set[str]) -> list[Item]:
    """Write the pending records as items stamped `stamp` (skipping ids the change already holds)."""
    items: list[Item] = []
    for name in sorted(set(pending.opened) | set(pending.closed)):
        if name in skip:
            continue
        fields = dict(pending.opened.get(name, {}))
        if name in pending.closed:
            fields["closed"] = pending.closed[name]
        before = rows.read_state(conn, KIND, name)
        after = apply(before, stamp, fields)
        rows.write_object(conn, KIND, name, after, stamp)
        items.append(Item(KIND, name, fields, False, before.version or None, {}, before.tomb))
    return items
