"""Generic configuration operations on any kind; every write goes through Store.commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from thinsync.auth.passwords import Passwords, password_problem
from thinsync.errors import Invalid, NotFound
from thinsync.model.registry import KINDS, PUBLIC_KINDS, KindSpec
from thinsync.model.types import valid_name
from thinsync.model.validate import SINGLETON_NAME
from thinsync.store import ChangeRequest, CommitResult, Op, State, Store, wall_iso
from thinsync.store.hlc import stamp_hlc, stamp_origin

MAX_PAGE = 1000


def public(spec: KindSpec, name: str, state: State, problems: list[str] | None = None) -> dict[str, Any]:
    """An object as clients see it: replicated fields (secrets hidden), its version, and — only when a
    merge left it broken — its `problems` (derived from replicated data, so equal on every server)."""
    hidden = spec.hidden_fields()
    body = {k: v for k, v in state.vals.items() if k not in hidden}
    if not spec.singleton:
        body = {"name": name, **body}
    body["version"] = state.version
    if problems:
        body["problems"] = problems
    return body


def kind_spec(kind: str) -> KindSpec:
    """The spec for a kind name from a URL or command line; NotFound for an unknown kind."""
    spec = KINDS.get(kind)
    if spec is None or spec.internal:
        raise NotFound(f"there is no configuration kind '{kind}'; kinds are: {', '.join(PUBLIC_KINDS)}")
    return spec


def check_name(spec: KindSpec, name: str) -> None:
    if not valid_name(name):
        raise Invalid(
            f"'{name}' is not a valid {spec.title} name: use 1 to 63 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )


@dataclass(frozen=True)
class Written:
    created: bool
    changed: bool
    object: dict[str, Any] | None


class ConfigService:
    def __init__(self, store: Store, passwords: Passwords) -> None:
        self.store = store
        self._passwords = passwords
        # Called before every write; synchronization installs one that refuses edits while pairing
        # and on a mirrored secondary.
        self.gate: Callable[[], None] = lambda: None

    async def list_page(self, kind: str, cursor: str | None = None, limit: int = MAX_PAGE) -> dict[str, Any]:
        spec = kind_spec(kind)
        if spec.singleton:
            return {"items": [await self.get(kind)], "next": None}
        if not 1 <= limit <= MAX_PAGE:
            raise Invalid(f"limit must be between 1 and {MAX_PAGE}")
        rows = await asyncio.to_thread(self.store.list_live, spec.name, cursor or "", limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "items": [public(spec, name, state, problems) for name, state, problems in rows],
            "next": rows[-1][0] if more else None,
        }

    async def get(self, kind: str, name: str = SINGLETON_NAME) -> dict[str, Any]:
        spec = kind_spec(kind)
        state = await asyncio.to_thread(self.store.get, spec.name, name)
        if not state.live:
            if spec.singleton:
                return self.defaults(spec)
            raise NotFound(f"{spec.title} '{name}' does not exist")
        problems = await asyncio.to_thread(self.store.problems, spec.name, name)
        return public(spec, name, state, problems)

    @staticmethod
    def defaults(spec: KindSpec) -> dict[str, Any]:
        """A singleton nobody has written yet: its default values, with an empty version."""
        return {**spec.model().model_dump(mode="json"), "version": ""}

    async def _prepare(self, spec: KindSpec, body: Any, partial: bool) -> Any:
        """Turn write-only secrets (password, pin) into their stored hashes."""
        if not isinstance(body, dict) or not spec.secrets:
            return body
        body = dict(body)
        for secret in spec.secrets:
            if secret.stored in body:
                raise Invalid(f"set '{secret.input}', not '{secret.stored}': the hash is computed by the server")
            if secret.input in body:
                value = body.pop(secret.input)
                if value is None and partial:
                    raise Invalid(f"'{secret.input}' cannot be removed, only changed")
                problem = password_problem(value) if secret.input == "password" else _pin_problem(value)
                if problem:
                    raise Invalid(problem, fields=[{"field": secret.input, "message": problem}])
                body[secret.stored] = await self._passwords.hash(value)
        return body

    async def write(self, author: str, summary: str, ops: list[Op], *, gated: bool = True) -> CommitResult:
        """Commit several ops as one change set (all or nothing)."""
        if gated:
            self.gate()
        return await self.store.commit(ChangeRequest(author, summary, tuple(ops)))

    async def put(self, author: str, kind: str, name: str, body: Any, if_match: str | None = None) -> Written:
        spec = kind_spec(kind)
        if not spec.singleton:
            check_name(spec, name)
        body = await self._prepare(spec, body, partial=False)
        verb = "set" if spec.singleton else "put"
        result = await self.write(author, f"{verb} {spec.title} {name}", [Op(spec.name, name, "put", body, if_match)])
        return self._written(spec, result)

    async def patch(self, author: str, kind: str, name: str, patch: Any, if_match: str | None = None) -> Written:
        spec = kind_spec(kind)
        if not isinstance(patch, dict):
            raise Invalid("a merge patch must be a JSON object")
        patch = await self._prepare(spec, patch, partial=True)
        result = await self.write(author, f"patch {spec.title} {name}", [Op(spec.name, name, "patch", patch, if_match)])
        return self._written(spec, result)

    async def delete(self, author: str, kind: str, name: str, if_match: str | None = None) -> None:
        spec = kind_spec(kind)
        await self.write(author, f"delete {spec.title} {name}", [Op(spec.name, name, "delete", None, if_match)])

    @staticmethod
    def _written(spec: KindSpec, result: CommitResult) -> Written:
        op = result.results[0]
        obj = public(spec, op.name, op.state) if op.state.live else None
        return Written(created=op.created and op.changed, changed=op.changed, object=obj)

    async def history(self, kind: str, name: str = SINGLETON_NAME) -> list[dict[str, Any]]:
        """The object's versions, newest first, read from the change log, each with the fields it
        changed against the version before (secrets shown only as changed)."""
        spec = kind_spec(kind)
        entries = await asyncio.to_thread(self.store.history, spec.name, name)
        if not entries:
            raise NotFound(f"{spec.title} '{name}' has no history: it never existed")
        identity = self.store.require_identity()
        # Origin node id -> server name: this server and the peers it knows (else the node id).
        names = {node: str(peer["name"]) for node, peer in (await asyncio.to_thread(self.store.peers)).items()}
        names[identity.node_id] = identity.name
        hidden = spec.hidden_fields()
        rows = []
        previous: dict[str, Any] = {}
        for change, state in entries:
            body = dict(state.vals) if state.live else {}
            changed = sorted(
                "secret" if f in hidden else f for f in set(previous) | set(body) if body.get(f) != previous.get(f)
            )
            origin_node = stamp_origin(change.stamp).split(".")[0]
            rows.append(
                {
                    "version": change.stamp,
                    "time": wall_iso(stamp_hlc(change.stamp)),
                    "author": change.author,
                    "summary": change.summary,
                    "server": names.get(origin_node, origin_node),
                    "origin": change.origin,
                    "deleted": not state.live,
                    "changed_fields": changed,
                    "diff": {
                        f: {"from": "(hidden)", "to": "(hidden)"}
                        if f == "secret"
                        else {"from": previous.get(f), "to": body.get(f)}
                        for f in changed
                    },
                    "body": public(spec, name, state) if state.live else None,
                }
            )
            previous = body
        return list(reversed(rows))


def _pin_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value.isdigit() or not 4 <= len(value) <= 12:
        return "a PIN must be 4 to 12 digits"
    return None
