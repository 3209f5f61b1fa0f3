"""The local write path: validate, stamp, write objects and one change set, in the writer's transaction."""

from __future__ import annotations

import sqlite3
from typing import Any

from thinsync.clock import Clock
from thinsync.errors import Conflict, Invalid, NotFound, PreconditionFailed
from thinsync.model.registry import ACCOUNT_KINDS, KINDS, KindSpec
from thinsync.model.validate import (
    SINGLETON_NAME,
    check_accounts,
    check_delete,
    check_references,
    check_uniques,
    merge_patch,
    validate_body,
)
from thinsync.store import conflicts, rows
from thinsync.store.changes import ChangeRequest, ChangeSet, CommitResult, Item, Op, OpResult
from thinsync.store.hlc import HLC, make_stamp, stamp_hlc, wall_iso
from thinsync.store.stamps import State, apply

_Planned = tuple[KindSpec, str, State, dict[str, Any], bool, Op]


def commit_local(
    conn: sqlite3.Connection, origin: str, hlc: HLC, clock: Clock, request: ChangeRequest
) -> tuple[CommitResult, ChangeSet | None]:
    """Plan, stamp and write a request; raises (and the caller rolls back) when anything is refused."""
    planned: list[_Planned] = []
    results: list[OpResult] = []
    seen: set[tuple[str, str]] = set()
    for op in request.ops:
        spec = KINDS[op.kind]
        name = SINGLETON_NAME if spec.singleton else op.name
        if (spec.name, name) in seen:
            raise Invalid(f"{spec.title} '{name}' appears twice in one change; change each object once")
        seen.add((spec.name, name))
        before = rows.read_state(conn, spec.name, name)
        _check_if_match(spec, name, op.if_match, before)
        fields, delete = plan(spec, name, op, before)
        results.append(OpResult(spec.name, name, op.action, not before.live and not delete, False, before))
        if fields or delete:
            planned.append((spec, name, before, fields, delete, op))
    if not planned:
        return CommitResult(results=results, change=None), None

    # A local write is stamped above the wall clock, every stamp seen, and the objects it touches.
    floor = max((stamp_hlc(p[2].version) + 1 for p in planned if p[2].version), default=0)
    value = hlc.now(floor)
    stamp = make_stamp(value, origin)
    items: list[Item] = []
    after: dict[tuple[str, str], State] = {}
    # A local write cannot create a break, only mend one: when no object anywhere has problems and no
    # conflict is open, there is nothing to re-check or close (the common case, kept cheap).
    broken = conflicts.any_problems(conn)
    settling = conflicts.any_open(conn)
    related = (
        conflicts.related_keys(conn, [(spec.name, name, before) for spec, name, before, *_ in planned])
        if broken
        else set()
    )
    pending = conflicts.Pending()
    at = wall_iso(value)
    for spec, name, before, fields, delete, _ in planned:
        state = apply(before, stamp, fields, delete)
        after[(spec.name, name)] = state
        bases = {f: before.stamps.get(f) for f in fields}
        item = Item(spec.name, name, fields, delete, before.version or None, bases, before.tomb)
        items.append(item)
        rows.write_object(conn, spec.name, name, state, stamp)
        if settling:
            conflicts.settle(conn, item, pending, at, request.author)
    lookup = rows.TxLookup(conn)
    for spec, name, before, *_ in planned:
        state = after[(spec.name, name)]
        if state.live:
            # A write may not introduce a break; breaks a merge created are the merge's to report.
            old = dict(before.vals) if before.live else None
            check_references(spec, name, dict(state.vals), lookup, old)
            check_uniques(spec, name, dict(state.vals), lookup, old)
        else:
            check_delete(spec, name, lookup)
    if any(kind in ACCOUNT_KINDS for kind, _ in after):
        check_accounts(*rows.accounts(conn))
    if broken:
        conflicts.refresh_problems(conn, related | set(after), pending, at)
    # Conflicts this change closes travel in the same change set.
    items.extend(conflicts.write_pending(conn, pending, stamp, skip={n for k, n in after if k == conflicts.KIND}))
    draft = ChangeSet(
        0, origin, rows.next_seq(conn, origin), value, request.author, request.summary, tuple(items), clock.time()
    )
    change = rows.append_change(conn, draft)
    for result in results:
        key = (result.kind, result.name)
        if key in after:
            result.state = after[key]
            result.changed = True
    return CommitResult(results=results, change=change), change


def _check_if_match(spec: KindSpec, name: str, if_match: str | None, before: State) -> None:
    if if_match is None:
        return
    if not before.live:
        raise PreconditionFailed(f"{spec.title} '{name}' does not exist, so If-Match cannot match")
    if if_match not in ("*", before.version):
        raise PreconditionFailed(
            f"{spec.title} '{name}' has changed since you read it "
            f"(your version {if_match}, current {before.version}); read it again and retry"
        )


def plan(spec: KindSpec, name: str, op: Op, before: State) -> tuple[dict[str, Any], bool]:
    """The fields an op sets (only those whose value changes, plus forced ones) and whether it deletes."""
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
    return {f: v for f, v in body.items() if before.vals.get(f) != v or f not in before.stamps or f in op.force}, False
