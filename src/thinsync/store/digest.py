"""Order-independent digest of the replicated state (objects and tombstones). Pure.

Each object contributes sha256 of a versioned canonical encoding of (kind, name, field stamps,
tombstone, hash of its values); the digest is the XOR of those, so it does not depend on the order
objects were written in. Objects fall in 256 buckets (first byte of sha256(kind, name)) so two
servers can find which objects differ without sending everything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

ENCODING_VERSION = 1
BUCKETS = 256


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def body_hash(vals: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(vals)).hexdigest()


def object_hash(kind: str, name: str, vals: dict[str, Any], stamps: dict[str, str], tomb: str | None) -> int:
    encoded = _canonical([ENCODING_VERSION, kind, name, stamps, tomb, body_hash(vals)])
    return int.from_bytes(hashlib.sha256(encoded).digest(), "big")


def bucket_of(kind: str, name: str) -> int:
    return hashlib.sha256(f"{kind}\x00{name}".encode()).digest()[0] % BUCKETS


class Digest:
    """Accumulates object hashes into a total and per-bucket digests."""

    def __init__(self) -> None:
        self.total = 0
        self.buckets = [0] * BUCKETS
        self.count = 0

    def add(self, kind: str, name: str, vals: dict[str, Any], stamps: dict[str, str], tomb: str | None) -> None:
        h = object_hash(kind, name, vals, stamps, tomb)
        self.total ^= h
        self.buckets[bucket_of(kind, name)] ^= h
        self.count += 1

    def hex(self) -> str:
        return f"v{ENCODING_VERSION}:{self.total:064x}"

    def bucket_hex(self) -> list[str]:
        return [f"{b:064x}" for b in self.buckets]


def differing_buckets(mine: Iterable[str], theirs: Iterable[str]) -> list[int]:
    return [i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b]
