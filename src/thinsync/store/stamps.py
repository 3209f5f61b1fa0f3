"""Stamped object state and the per-field merge rule (DESIGN §4 "Field stamps"). Pure.

Every top-level field carries the stamp of its last write; a delete is a tombstone stamp.
The object is live unless its tombstone is above every field stamp. Merging two states takes,
field by field, the value with the higher stamp, and the higher tombstone: a commutative,
associative and idempotent function, so every delivery order gives the same state.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from thinsync.store.record import record


def _value_key(value: Any) -> str:
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


@record
class State:
    vals: Mapping[str, Any] = field(default_factory=dict)
    stamps: Mapping[str, str] = field(default_factory=dict)
    tomb: str | None = None

    @property
    def live(self) -> bool:
        if not self.stamps:
            return False
        return self.tomb is None or max(self.stamps.values()) > self.tomb

    @property
    def version(self) -> str:
        """The highest stamp (fields and tombstone): equal on every server for the same state."""
        top = max(self.stamps.values(), default="")
        tomb = self.tomb
        return tomb if tomb is not None and tomb > top else top


EMPTY = State()


def apply(state: State, stamp: str, fields: Mapping[str, Any], delete: bool = False) -> State:
    """State after a change stamped `stamp` that sets `fields` (and deletes when `delete`)."""
    return merge_change(state, stamp, fields, delete)[0]


def merge(a: State, b: State) -> State:
    """Per-field merge: the higher stamp wins; equal stamps with different values (an out-of-band
    edit) are settled by the value's hash so the result is still the same everywhere."""
    vals = dict(a.vals)
    stamps = dict(a.stamps)
    for name, stamp in b.stamps.items():
        mine = stamps.get(name)
        theirs_value = b.vals.get(name)
        if mine is None or stamp > mine or (stamp == mine and _value_key(theirs_value) > _value_key(vals.get(name))):
            vals[name] = theirs_value
            stamps[name] = stamp
    tombs = [t for t in (a.tomb, b.tomb) if t is not None]
    return State(vals=vals, stamps=stamps, tomb=max(tombs) if tombs else None)


def merge_change(a: State, stamp: str, fields: Mapping[str, Any], delete: bool = False) -> tuple[State, bool]:
    """`merge(a, <the change stamped `stamp` setting `fields`, deleting when `delete`>)` and whether the
    result differs from `a`, in one pass: the replication hot path (no state built for the change,
    `a` itself returned when the change loses everywhere). Property-tested against `merge`."""
    vals: dict[str, Any] | None = None
    stamps: dict[str, str] | None = None
    for name, value in fields.items():
        mine = a.stamps.get(name)  # each field once: the stamps before this change are a's
        if mine is None or stamp > mine or (stamp == mine and _value_key(value) > _value_key(a.vals.get(name))):
            if vals is None or stamps is None:
                vals, stamps = dict(a.vals), dict(a.stamps)
            vals[name] = value
            stamps[name] = stamp
    tomb = a.tomb
    if delete and (tomb is None or stamp > tomb):
        tomb = stamp
    if vals is None or stamps is None:
        if tomb == a.tomb:
            return a, False
        return State(vals=a.vals, stamps=a.stamps, tomb=tomb), True
    return State(vals=vals, stamps=stamps, tomb=tomb), True
