"""Validation of one object (shape) and across objects (references, unique keys); pure.

Cross-object checks read through a `Lookup`, which the store implements inside the writer's
transaction so that two concurrent writes cannot both pass a uniqueness check.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol

from pydantic import ValidationError

from thinsync.errors import Conflict, Invalid
from thinsync.model.registry import KINDS, Body, KindSpec, referrers_of

SINGLETON_NAME = "default"


class Lookup(Protocol):
    def exists(self, kind: str, name: str) -> bool:
        """True when a live object (kind, name) exists."""
        ...

    def holders(self, kind: str, label: str, value: str) -> list[str]:
        """Names of live objects of `kind` holding unique `value` under `label`."""
        ...

    def referrers(self, kind: str, name: str) -> list[tuple[str, str]]:
        """(kind, name) of live objects that reference (kind, name)."""
        ...


def describe_errors(exc: ValidationError, renames: dict[str, str] | None = None) -> tuple[str, list[dict[str, str]]]:
    """Turn pydantic's errors into one plain sentence plus a per-field list.

    `renames` maps stored field names to the names clients send (`password_hash` -> `password`).
    """
    fields: list[dict[str, str]] = []
    for err in exc.errors(include_url=False):
        where = ".".join(str((renames or {}).get(str(p), p)) for p in err["loc"]) or "body"
        kind = err["type"]
        if kind == "missing":
            text = "is required"
        elif kind == "extra_forbidden":
            text = "is not a known field"
        else:
            text = str(err["msg"]).removeprefix("Value error, ")
        fields.append({"field": where, "message": text})
    sentence = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    if len(fields) > 5:
        sentence += f" (and {len(fields) - 5} more)"
    return sentence, fields


def validate_body(spec: KindSpec, name: str, raw: Any) -> Body:
    """Validate a whole object; return its normalised fields (without `name`)."""
    if not isinstance(raw, dict):
        raise Invalid(f"a {spec.title} must be a JSON object")
    data = dict(raw)
    data.pop("version", None)  # clients may send back what they read
    if spec.singleton:
        data.pop("name", None)
    else:
        if "name" in data and data["name"] != name:
            raise Invalid(
                f"the body names '{data['name']}' but the URL names '{name}'; "
                "an object cannot be renamed, create a new one instead"
            )
        data["name"] = name
    try:
        model = spec.model.model_validate(data)
    except ValidationError as exc:
        sentence, fields = describe_errors(exc, {s.stored: s.input for s in spec.secrets})
        raise Invalid(f"{spec.title} '{name}' is not valid: {sentence}", fields=fields) from None
    body = model.model_dump(mode="json")
    body.pop("name", None)
    too_big = _oversized_integer(body)
    if too_big is not None:
        raise Invalid(
            f"{spec.title} '{name}' is not valid: {too_big or 'body'}: numbers must lie within ±2^63",
            fields=[{"field": too_big or "body", "message": "numbers must lie within ±2^63"}],
        )
    return body


INT64 = 2**63


def _oversized_integer(value: Any, where: str = "") -> str | None:
    """Where an integer beyond 64 bits sits in `value`, or None. The store and the peer protocol keep
    numbers as 64-bit integers (a larger one would come back as a float), so none may enter."""
    if isinstance(value, int) and not isinstance(value, bool):
        return where if not -INT64 <= value < INT64 else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _oversized_integer(item, f"{where}.{key}" if where else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _oversized_integer(item, f"{where}[{i}]")
            if found is not None:
                return found
    return None


def check_references(spec: KindSpec, name: str, body: Body, lookup: Lookup, old: Body | None = None) -> None:
    """Every referenced object must exist (live); references already held in `old` are not re-checked."""
    for ref in spec.refs:
        held = set(ref.extract(old)) if old is not None else set()
        for target in ref.extract(body):
            if (target == name and ref.target == spec.name) or target in held:
                continue
            if not lookup.exists(ref.target, target):
                title = KINDS[ref.target].title
                raise Invalid(
                    f"{spec.title} '{name}' refers in {ref.field} to {title} '{target}', which does not exist",
                    fields=[{"field": ref.field, "message": f"no {title} named '{target}'"}],
                )


def check_uniques(spec: KindSpec, name: str, body: Body, lookup: Lookup, old: Body | None = None) -> None:
    """Unique keys (MAC addresses, card ids) may not be held by another object of the kind.

    Keys already held in `old` are not re-checked: a duplicate only a merge created is reported as
    a conflict, and must not block unrelated edits of either object.
    """
    for unique in spec.uniques:
        held = set(unique.extract(old)) if old is not None else set()
        for value in unique.extract(body):
            if value in held:
                continue
            others = [n for n in lookup.holders(spec.name, unique.label, value) if n != name]
            if others:
                raise Conflict(
                    f"{unique.label} {value} is already used by {spec.title} '{others[0]}'",
                    field=unique.label,
                )


def check_delete(spec: KindSpec, name: str, lookup: Lookup) -> None:
    """An object still referenced by another may not be deleted."""
    users = [(k, n) for k, n in lookup.referrers(spec.name, name) if (k, n) != (spec.name, name)]
    if users:
        shown = ", ".join(f"{KINDS[k].title} '{n}'" for k, n in users[:3])
        more = f" and {len(users) - 3} more" if len(users) > 3 else ""
        raise Conflict(
            f"{spec.title} '{name}' is still used by {shown}{more}; change those first",
            used_by=[{"kind": k, "name": n} for k, n in users],
        )


def ref_targets(spec: KindSpec, body: Body) -> Iterable[tuple[str, str]]:
    """(kind, name) of every object `body` references (for the store's reference index)."""
    for ref in spec.refs:
        for target in ref.extract(body):
            yield ref.target, target


def unique_keys(spec: KindSpec, body: Body) -> Iterable[tuple[str, str]]:
    """(label, value) of every unique key `body` holds (for the store's unique index)."""
    for unique in spec.uniques:
        for value in unique.extract(body):
            yield unique.label, value


def index_keys(spec: KindSpec, body: Body) -> Iterable[tuple[str, str]]:
    """(label, value) of every lookup index `body` is under (for the store's index)."""
    for index in spec.indexes:
        for value in index.extract(body):
            yield index.label, value


def may_reference(kind: str) -> bool:
    """True when objects of some kind can reference `kind` (deletes need a referrer check)."""
    return bool(referrers_of(kind))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def canonical_json(value: Any) -> str:
    """The canonical encoding used for hashes and byte-identical documents."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def check_accounts(admins: list[Body], groups: dict[str, Body]) -> None:
    """At least one enabled account must keep the 'admin' permission, so nobody is locked out."""
    admin_groups = {name for name, body in groups.items() if "admin" in (body.get("permissions") or [])}
    for admin in admins:
        if not admin.get("disabled") and set(admin.get("security_groups") or []) & admin_groups:
            return
    raise Conflict(
        "this change would leave no enabled admin account with the 'admin' permission; "
        "keep at least one, or nobody could manage accounts any more"
    )
