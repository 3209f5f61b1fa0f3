"""Restore: verify a whole backup first, show what it would change, then apply it as one ordinary
change set (so with auto-sync on it restores every server). Pure planning; the service writes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from thinsync.backup.archive import BadBackup
from thinsync.errors import Invalid, ThinsyncError
from thinsync.model.registry import KINDS
from thinsync.model.validate import SINGLETON_NAME, ref_targets, validate_body
from thinsync.store import Op

# Left as they are unless the request names them: restoring an old backup must not unpair the
# servers or lock the administrators out.
PROTECTED = ("server-list", "admins", "security-groups", "license")
Objects = dict[str, dict[str, dict[str, Any]]]


def restorable(include: Iterable[str]) -> list[str]:
    extra = set(include)
    unknown = extra - set(PROTECTED)
    if unknown:
        raise Invalid(f"include may name only {', '.join(PROTECTED)}; not {', '.join(sorted(unknown))}")
    return [k for k, spec in KINDS.items() if not spec.internal and (k not in PROTECTED or k in extra)]


def verify(objects: list[dict[str, Any]], kinds: list[str], current: Objects) -> Objects:
    """Every object valid, and every reference whole in the configuration the restore would leave."""
    wanted: Objects = {k: {} for k in kinds}
    problems: list[str] = []
    for position, obj in enumerate(objects):
        if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str) or not isinstance(obj.get("name"), str):
            problems.append(f"entry {position} is not an object with kind and name")
            continue
        kind, name = obj["kind"], obj["name"]
        if kind not in KINDS or KINDS[kind].internal:
            problems.append(f"entry {position} has unknown kind '{kind}'")
            continue
        if kind not in wanted:
            continue
        try:
            body = validate_body(KINDS[kind], name, obj.get("body"))
        except ThinsyncError as exc:
            problems.append(exc.message)
            continue
        key = SINGLETON_NAME if KINDS[kind].singleton else name
        if key in wanted[kind]:
            problems.append(f"{KINDS[kind].title} '{name}' appears twice")
        wanted[kind][key] = body
    final = {k: (wanted[k] if k in wanted else current.get(k, {})) for k in KINDS if not KINDS[k].internal}
    for kind, found in final.items():
        for name, body in found.items():
            for target_kind, target in ref_targets(KINDS[kind], body):
                if target not in final.get(target_kind, {}):
                    problems.append(
                        f"{KINDS[kind].title} '{name}' refers to {KINDS[target_kind].title} '{target}', "
                        "which the restored configuration would not have"
                    )
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise BadBackup("the backup cannot be restored: " + "; ".join(problems[:5]) + more, problems=problems[:100])
    return wanted


def diff(wanted: Objects, current: Objects) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {"added": {}, "changed": {}, "removed": {}}
    for kind, target in wanted.items():
        have = current.get(kind, {})
        added = sorted(set(target) - set(have))
        removed = [] if KINDS[kind].singleton else sorted(set(have) - set(target))
        changed = sorted(n for n in set(target) & set(have) if target[n] != have[n])
        for key, names in (("added", added), ("changed", changed), ("removed", removed)):
            if names:
                out[key][kind] = names
    return out


def ops(wanted: Objects, current: Objects, changes: dict[str, dict[str, list[str]]]) -> list[Op]:
    out = []
    for kind in wanted:
        for name in changes["added"].get(kind, []) + changes["changed"].get(kind, []):
            out.append(Op(kind, name, "put", wanted[kind][name]))
        for name in changes["removed"].get(kind, []):
            out.append(Op(kind, name, "delete"))
    return out


def count(changes: dict[str, dict[str, list[str]]]) -> int:
    return sum(len(names) for group in changes.values() for names in group.values())
