"""The backup file format (docs/backup-format.md): gzip-compressed JSON with a manifest,
optionally encrypted with a passphrase.

    {"manifest": {"format": "thinsync-backup", "format_version": 1, "server": ..., "node_id": ...,
                  "created": ISO time, "reason": ..., "counts": {kind: n}, "digest": ..., "sha256": ...},
     "objects": [{"kind": ..., "name": ..., "body": {...}}, ...]}

`sha256` is over the canonical JSON of `objects`; `digest` is the replicated-state digest at the
time of the backup (two backups of identical configurations show the same digest).

An encrypted backup is `TSBE1\\n`, one line of JSON (the key derivation: scrypt salt and costs,
and the AES-GCM nonce), `\\n`, then the AES-256-GCM ciphertext of the gzip bytes above (the header
line is authenticated as associated data).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from thinsync.errors import Invalid, NotFound
from thinsync.model.registry import KINDS
from thinsync.store import Store

FORMAT = "thinsync-backup"
FORMAT_VERSION = 1
SUFFIX = ".tsb.gz"
ENCRYPTED_MAGIC = b"TSBE1\n"
_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
SCRYPT = {"n": 2**15, "r": 8, "p": 1}


class BadBackup(Invalid):
    """The file cannot be restored; the message says why. Nothing was changed."""

    code = "bad_backup"


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def encode(manifest: dict[str, Any], objects: list[dict[str, Any]], passphrase: str | None = None) -> bytes:
    data = gzip.compress(canonical({"manifest": manifest, "objects": objects}), compresslevel=6, mtime=0)
    if not passphrase:
        return data
    salt, nonce = os.urandom(16), os.urandom(12)
    header = canonical(
        {
            "kdf": "scrypt",
            "salt": salt.hex(),
            **SCRYPT,
            "cipher": "aes-256-gcm",
            "nonce": nonce.hex(),
            "format_version": FORMAT_VERSION,
        }
    )
    key = _key(passphrase, salt, SCRYPT["n"], SCRYPT["r"], SCRYPT["p"])
    return ENCRYPTED_MAGIC + header + b"\n" + AESGCM(key).encrypt(nonce, data, header)


def is_encrypted(data: bytes) -> bool:
    return data.startswith(ENCRYPTED_MAGIC)


def decode(data: bytes, passphrase: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Open and verify a backup; BadBackup says plainly what is wrong."""
    if is_encrypted(data):
        head, sep, ciphertext = data[len(ENCRYPTED_MAGIC) :].partition(b"\n")
        if not sep:
            raise BadBackup("the encrypted backup is truncated (no header)")
        try:
            header = json.loads(head)
            salt, nonce = bytes.fromhex(header["salt"]), bytes.fromhex(header["nonce"])
            n, r, p = int(header["n"]), int(header["r"]), int(header["p"])
        except (ValueError, KeyError, TypeError):
            raise BadBackup("the encrypted backup's header is damaged") from None
        if not passphrase:
            raise BadBackup("this backup is encrypted: give its passphrase")
        if n > 2**20 or r > 32 or p > 16:
            raise BadBackup("the encrypted backup asks for unreasonable key-derivation costs")
        try:
            data = AESGCM(_key(passphrase, salt, n, r, p)).decrypt(nonce, ciphertext, head)
        except InvalidTag:
            raise BadBackup("wrong passphrase, or the encrypted backup was changed or truncated") from None
    if not data:
        raise BadBackup("the file is empty: not a thinsync backup, or truncated to nothing")
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        raise BadBackup("the file is not a thinsync backup, or it is truncated (not valid gzip)") from None
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadBackup("the backup is damaged: its content is not valid JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("manifest"), dict):
        raise BadBackup("the file is not a thinsync backup (no manifest)")
    manifest = document["manifest"]
    if manifest.get("format") != FORMAT:
        raise BadBackup(f"the file is not a thinsync backup (format {manifest.get('format')!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BadBackup(
            f"the backup has format version {version}, newer than this thinsync reads ({FORMAT_VERSION}); "
            "restore it with a newer thinsync"
        )
    objects = document.get("objects")
    if not isinstance(objects, list):
        raise BadBackup("the backup is damaged: it has no object list")
    if hashlib.sha256(canonical(objects)).hexdigest() != manifest.get("sha256"):
        raise BadBackup("the backup's checksum does not match its content: it was changed or damaged")
    return manifest, objects


@dataclass(frozen=True)
class Snapshot:
    """What a backup holds, read in one transaction: every live object of the public kinds, and the
    digest of the replicated state they were read with."""

    server: str
    node_id: str
    objects: list[dict[str, Any]]
    digest: str


def snapshot(store: Store) -> Snapshot:
    identity = store.require_identity()
    everything, digest = store.export()
    objects = [o for o in everything if o["kind"] in KINDS and not KINDS[o["kind"]].internal]
    return Snapshot(identity.name, identity.node_id, objects, digest)


def create(
    store: Store, directory: Path, reason: str, now: float | None = None, passphrase: str | None = None
) -> dict[str, Any]:
    """Write a backup of the current configuration; returns its manifest (with `id` and `size`)."""
    return write(snapshot(store), directory, reason, now, passphrase)


def write(
    snap: Snapshot, directory: Path, reason: str, now: float | None = None, passphrase: str | None = None
) -> dict[str, Any]:
    """Write a backup file of a snapshot already read (a restore backs up the very state it compared)."""
    objects, digest = snap.objects, snap.digest
    now = time.time() if now is None else now
    counts: dict[str, int] = {}
    for obj in objects:
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "server": snap.server,
        "node_id": snap.node_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "reason": reason,
        "counts": counts,
        "digest": digest,
        "sha256": hashlib.sha256(canonical(objects)).hexdigest(),
    }
    directory.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", reason.lower()).strip("-")[:32] or "backup"
    stem = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}-{int(now * 1000) % 1000:03d}-{slug}"
    tmp = directory / f".{stem}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(encode(manifest, objects, passphrase))
        fh.flush()
        os.fsync(fh.fileno())
    try:
        backup_id, path = _publish(tmp, directory, stem)
    finally:
        tmp.unlink(missing_ok=True)
    return {"id": backup_id, "size": path.stat().st_size, "encrypted": bool(passphrase), **manifest}


def _publish(tmp: Path, directory: Path, stem: str) -> tuple[str, Path]:
    """Give the finished file its name; two backups in the same millisecond with the same reason get
    `-2`, `-3`, ...: a backup never overwrites another."""
    for attempt in range(1, 1000):
        backup_id = stem if attempt == 1 else f"{stem}-{attempt}"
        path = directory / f"{backup_id}{SUFFIX}"
        try:
            os.link(tmp, path)  # atomic, and fails when the name is taken
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links
            if path.exists():
                continue
            os.replace(tmp, path)
        return backup_id, path
    raise FileExistsError(f"no free backup name for {stem}")


def path_of(directory: Path, backup_id: str) -> Path:
    if not _ID.fullmatch(backup_id):
        raise NotFound(f"there is no backup '{backup_id}'")
    path = directory / f"{backup_id}{SUFFIX}"
    if not path.is_file():
        raise NotFound(f"there is no backup '{backup_id}'")
    return path


def summary(path: Path) -> dict[str, Any]:
    backup_id = path.name[: -len(SUFFIX)]
    data = path.read_bytes()
    base = {"id": backup_id, "size": len(data), "encrypted": is_encrypted(data)}
    if base["encrypted"]:
        return base
    try:
        manifest, _ = decode(data)
    except BadBackup as exc:
        return {**base, "damaged": exc.message}
    return {**base, **manifest}


def list_backups(directory: Path) -> list[dict[str, Any]]:
    """Backups in the directory, newest first, with their manifests."""
    if not directory.is_dir():
        return []
    return [summary(path) for path in sorted(directory.glob(f"*{SUFFIX}"), reverse=True)]


def delete(directory: Path, backup_id: str) -> None:
    path_of(directory, backup_id).unlink()


def prune(directory: Path, keep: int, reason: str) -> list[str]:
    """Keep the newest `keep` backups written for `reason` (exactly: schedule `backup` does not count
    schedule `backup2`'s); delete older ones. Encrypted backups show no reason and are never pruned."""
    mine = [b for b in list_backups(directory) if b.get("reason") == reason]
    removed = []
    for backup in mine[keep:]:
        delete(directory, backup["id"])
        removed.append(backup["id"])
    return removed
