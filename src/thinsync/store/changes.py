"""Change requests, committed change sets and their JSON forms (the log's record format)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from thinsync import jsonfmt
from thinsync.store.record import record

Action = Literal["put", "patch", "delete"]


@dataclass(frozen=True, slots=True)
class Op:
    """One requested change to one object."""

    kind: str
    name: str
    action: Action
    body: Any = None
    if_match: str | None = None
    # Fields to stamp even when their value does not change (resolving a conflict in favour of the winner).
    force: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    """What a caller asks the one write path to do, atomically."""

    author: str
    summary: str
    ops: tuple[Op, ...]


@record
class Item:
    """One object's part of a committed change set: the fields it set, or a delete."""

    kind: str
    name: str
    set: dict[str, Any]
    delete: bool
    base: str | None
    # The stamps the writer saw on the fields it set, and the tombstone it saw: a receiver whose
    # stamps differ had a concurrent change (a conflict to record).
    bases: dict[str, str | None] = field(default_factory=dict)
    base_tomb: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "set": self.set,
            "delete": self.delete,
            "base": self.base,
            "bases": self.bases,
            "base_tomb": self.base_tomb,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Item:
        """From the log's JSON (freshly parsed: its objects are taken, not copied)."""
        fields, bases = data["set"], data.get("bases") or {}
        if not isinstance(fields, dict) or not isinstance(bases, dict):
            raise TypeError("an item's set and bases must be objects")
        return Item(
            data["kind"], data["name"], fields, bool(data["delete"]), data.get("base"), bases, data.get("base_tomb")
        )


@record
class ChangeSet:
    """A committed transaction as the log holds it; `id` is this server's local log position."""

    id: int
    origin: str
    seq: int
    hlc: int
    author: str
    summary: str
    items: tuple[Item, ...]
    applied_at: float
    # The items' canonical JSON when it is already known (read from the log, received from a peer):
    # the log and the link pass it on as it is instead of encoding the items again.
    raw_items: str | None = field(default=None, compare=False, repr=False)

    @property
    def stamp(self) -> str:
        return f"{self.hlc:016x}.{self.origin}"

    def items_json(self) -> str:
        """The items as the log stores them: compact JSON, keys sorted."""
        if self.raw_items is not None:
            return self.raw_items
        return jsonfmt.dumps([i.to_json() for i in self.items], sort_keys=True)

    def event(self) -> dict[str, Any]:
        """The public notification (change stream): items carry the version they produced."""
        return {
            "id": self.id,
            "origin": self.origin,
            "seq": self.seq,
            "hlc": self.hlc,
            "author": self.author,
            "summary": self.summary,
            "items": [{"kind": i.kind, "name": i.name, "version": self.stamp, "deleted": i.delete} for i in self.items],
        }


@dataclass
class OpResult:
    kind: str
    name: str
    action: Action
    created: bool
    changed: bool
    state: Any  # stamps.State after the op


@dataclass
class CommitResult:
    results: list[OpResult]
    change: ChangeSet | None
    after_commit: Callable[[], None] | None = field(default=None, repr=False)
