"""Bearer tokens: HMAC-SHA256 signed, expiring, bound to the password they were issued for."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

from thinsync.errors import Unauthorized

PREFIX = "ts1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def password_fingerprint(password_hash: str) -> str:
    """Changes when the password changes, so old tokens stop working."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Claims:
    username: str
    expires: float
    fingerprint: str


def issue(secret: str, claims: Claims) -> str:
    payload = _b64(json.dumps({"sub": claims.username, "exp": claims.expires, "pwf": claims.fingerprint}).encode())
    signature = hmac.new(secret.encode(), f"{PREFIX}.{payload}".encode(), hashlib.sha256).digest()
    return f"{PREFIX}.{payload}.{_b64(signature)}"


def read(secret: str, token: str, now: float) -> Claims:
    """The claims of a valid token; Unauthorized for a forged, malformed or expired one."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise Unauthorized("the bearer token is not a thinsync token; log in again")
    expected = hmac.new(secret.encode(), f"{PREFIX}.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        given = _unb64(parts[2])
        if not hmac.compare_digest(expected, given):
            raise Unauthorized("the bearer token's signature is not valid; log in again")
        data = json.loads(_unb64(parts[1]))
        claims = Claims(str(data["sub"]), float(data["exp"]), str(data["pwf"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise Unauthorized("the bearer token is malformed; log in again") from exc
    if claims.expires <= now:
        raise Unauthorized("the bearer token has expired; log in again")
    return claims
