"""Licence files: signed JSON (Ed25519). Pure parsing, signing and checking.

{"format": "thinsync-license", "format_version": 1,
 "license": {"id", "mode", "terminals", "installation_ids": [...], "issued", "expires",
             "max_version", "customer"},
 "issuer": "<base64 public key>", "signature": "<base64 Ed25519 signature of canonical(license)>"}
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from thinsync.errors import Invalid

FORMAT = "thinsync-license"
FORMAT_VERSION = 1
MODES = ("standard", "mirrored", "redundant", "enterprise")
# These modes require automatic synchronization and a licence naming both servers of the pair.
NEEDS_SYNC = frozenset({"mirrored", "redundant", "enterprise"})


class BadLicense(Invalid):
    code = "bad_license"


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def public_key_text(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def _date(text: Any, what: str) -> datetime:
    try:
        value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise BadLicense(f"the licence's {what} '{text}' is not a date") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class License:
    id: str
    mode: str
    terminals: int | None
    installation_ids: tuple[str, ...]
    issued: datetime
    expires: datetime | None
    max_version: str
    customer: str
    issuer: str
    document: dict[str, Any]

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mode": self.mode,
            "terminals": self.terminals,
            "installation_ids": list(self.installation_ids),
            "issued": self.issued.isoformat(),
            "expires": self.expires.isoformat() if self.expires else None,
            "max_version": self.max_version,
            "customer": self.customer,
            "issuer": self.issuer,
        }


def sign(private_key: Ed25519PrivateKey, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A signed licence document (for `thinsync license issue` and tests)."""
    body = dict(fields)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "license": body,
        "issuer": public_key_text(private_key.public_key()),
        "signature": base64.b64encode(private_key.sign(canonical(body))).decode(),
    }


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return ()


def parse(document: Any, trusted: Iterable[str]) -> License:
    """Check format, issuer and signature, and the fields' shapes; BadLicense says what is wrong."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BadLicense("this is not a thinsync licence file")
    version = document.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BadLicense(f"the licence has format version {version}; this thinsync reads up to {FORMAT_VERSION}")
    body, issuer, signature = document.get("license"), document.get("issuer"), document.get("signature")
    if not isinstance(body, dict) or not isinstance(issuer, str) or not isinstance(signature, str):
        raise BadLicense("the licence file is incomplete (license, issuer and signature are required)")
    if issuer not in set(trusted):
        raise BadLicense(
            "the licence was issued by an unknown issuer (its key is not among the trusted "
            "issuer keys in the license_issuer_keys setting)"
        )
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(issuer, validate=True))
        key.verify(base64.b64decode(signature, validate=True), canonical(body))
    except (InvalidSignature, ValueError):
        raise BadLicense(
            "the licence's signature is not valid: the file was changed or not signed by its issuer"
        ) from None
    mode = body.get("mode")
    if mode not in MODES:
        raise BadLicense(f"the licence mode '{mode}' is not one of {', '.join(MODES)}")
    terminals = body.get("terminals")
    if terminals is not None and (not isinstance(terminals, int) or isinstance(terminals, bool) or terminals < 0):
        raise BadLicense("the licence's terminal count must be a whole number")
    ids = body.get("installation_ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadLicense("the licence's installation ids must be a list of node ids")
    max_version = str(body.get("max_version") or "")
    if max_version and not _version_tuple(max_version):
        raise BadLicense(f"the licence's highest version '{max_version}' is not a version number like 1.2")
    return License(
        id=str(body.get("id") or ""),
        mode=mode,
        terminals=terminals,
        installation_ids=tuple(ids),
        issued=_date(body.get("issued"), "issue date"),
        expires=_date(body["expires"], "expiry date") if body.get("expires") else None,
        max_version=max_version,
        customer=str(body.get("customer") or ""),
        issuer=issuer,
        document=document,
    )


def problems(lic: License, now: datetime, node_id: str, peers: list[str], auto_sync: bool, version: str) -> list[str]:
    """What makes the licence not (or no longer) valid here, in plain words; empty when valid."""
    found = []
    if lic.issued > now:
        found.append(f"the licence is not valid before {lic.issued.date().isoformat()}")
    if lic.expires is not None and lic.expires <= now:
        found.append(f"the licence expired on {lic.expires.date().isoformat()}")
    if lic.installation_ids and node_id not in lic.installation_ids:
        found.append(f"the licence is for installations {', '.join(lic.installation_ids)}, not this server ({node_id})")
    highest = _version_tuple(lic.max_version)
    # Compared to the licence's own precision: "1.2" covers 1.2, 1.2.0 and 1.2.9, not 1.3.
    if highest and _version_tuple(version)[: len(highest)] > highest:
        found.append(f"the licence covers thinsync up to {lic.max_version}; this is {version}")
    if lic.mode in NEEDS_SYNC:
        if not auto_sync:
            found.append(f"a {lic.mode} licence requires automatic synchronization, which is off")
        missing = [p for p in peers if p not in lic.installation_ids]
        if len(lic.installation_ids) < 2 or missing:
            found.append(
                f"a {lic.mode} licence must name both servers of the pair by installation id "
                f"(this server {node_id}" + (f", partner {', '.join(peers)}" if peers else "") + ")"
            )
    return found


def expiry_start(lic: License, now: datetime) -> datetime | None:
    """When the licence stopped being valid by its dates (for the grace period), or None."""
    if lic.expires is not None and lic.expires <= now:
        return lic.expires
    return None
