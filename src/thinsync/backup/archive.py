"""The backup file format (docs/backup-format.md): gzip-compressed JSON with a manifest.

    {"manifest": {"format": "thinsync-backup", "format_version": 1, "server": ..., "node_id": ...,
                  "created": ISO time, "reason": ..., "counts": {kind: n}, "digest": ..., "sha256": ...},
     "objects": [{"kind": ..., "name": ..., "body": {...}}, ...]}

`sha256` is over the canonical JSON of `objects`; `digest` is the store's replicated-state digest
at the time of the backup (so two backups of identical configurations show the same digest).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from thinsync.errors import NotFound
from thinsync.model.registry import KINDS
from thinsync.store import Store

FORMAT = "thinsync-backup"
FORMAT_VERSION = 1
SUFFIX = ".tsb.gz"
_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def read_objects(store: Store) -> tuple[list[dict[str, Any]], str]:
    """Every live object of every public kind (with stored secrets), and the digest, from one read."""

    def fn(conn: Any) -> tuple[list[dict[str, Any]], str]:
        from thinsync.store.replica import digest

        objects = []
        for kind, name, vals in conn.execute("SELECT kind, name, vals FROM objects WHERE live=1 ORDER BY kind, name"):
            if kind in KINDS and not KINDS[kind].internal:
                objects.append({"kind": kind, "name": name, "body": json.loads(vals)})
        return objects, digest(conn).hex()

    return store.read(fn)


def create(store: Store, directory: Path, reason: str, now: float | None = None) -> dict[str, Any]:
    """Write a backup of the current configuration; returns its manifest (with `id` and `size`)."""
    identity = store.require_identity()
    objects, digest = read_objects(store)
    now = time.time() if now is None else now
    counts: dict[str, int] = {}
    for obj in objects:
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "server": identity.name,
        "node_id": identity.node_id,
        "created": created,
        "reason": reason,
        "counts": counts,
        "digest": digest,
        "sha256": hashlib.sha256(canonical(objects)).hexdigest(),
    }
    directory.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", reason.lower()).strip("-")[:32] or "backup"
    backup_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}-{int(now * 1000) % 1000:03d}-{slug}"
    path = directory / f"{backup_id}{SUFFIX}"
    tmp = path.with_suffix(".tmp")
    data = gzip.compress(canonical({"manifest": manifest, "objects": objects}), compresslevel=6)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return {"id": backup_id, "size": path.stat().st_size, **manifest}


def path_of(directory: Path, backup_id: str) -> Path:
    if not _ID.fullmatch(backup_id):
        raise NotFound(f"there is no backup '{backup_id}'")
    path = directory / f"{backup_id}{SUFFIX}"
    if not path.is_file():
        raise NotFound(f"there is no backup '{backup_id}'")
    return path


def list_backups(directory: Path) -> list[dict[str, Any]]:
    """Backups in the directory, newest first, with their manifests."""
    found: list[dict[str, Any]] = []
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob(f"*{SUFFIX}"), reverse=True):
        backup_id = path.name[: -len(SUFFIX)]
        try:
            with gzip.open(path, "rb") as fh:
                manifest = json.loads(fh.read())["manifest"]
        except (OSError, ValueError, KeyError, EOFError):
            manifest = {"damaged": True}
        found.append({"id": backup_id, "size": path.stat().st_size, **manifest})
    return found
