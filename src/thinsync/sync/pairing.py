"""Pairing: make two (or more) servers one cluster, and install the primary's configuration on
the others (after an automatic backup of theirs)."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx2

from thinsync.backup import archive
from thinsync.errors import BadRequest, Invalid, PeerError, Unauthorized
from thinsync.settings import Settings
from thinsync.store import Store
from thinsync.sync import protocol as p
from thinsync.sync.link import Cluster

log = logging.getLogger(__name__)
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
TIMEOUT = httpx2.Timeout(60.0, connect=5.0)


def entries(server_list: dict[str, Any]) -> list[dict[str, Any]]:
    """Every server of the list with its role."""
    out = []
    if server_list.get("primary"):
        out.append({**server_list["primary"], "role": "primary"})
    if server_list.get("secondary"):
        out.append({**server_list["secondary"], "role": "secondary"})
    out.extend({**e, "role": "member"} for e in server_list.get("servers") or [])
    return out


def find_me(server_list: dict[str, Any], name: str) -> dict[str, Any] | None:
    for entry in entries(server_list):
        if entry["name"].lower() == name.lower():
            return entry
    return None


class PairingCodes:
    """One-time codes this server shows, so another can pair without an admin password."""

    def __init__(self, ttl_s: float = 600.0) -> None:
        self._codes: dict[str, float] = {}
        self._ttl = ttl_s

    def issue(self) -> tuple[str, float]:
        raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
        code = f"{raw[:4]}-{raw[4:]}"
        expires = time.time() + self._ttl
        self._codes[code] = expires
        return code, expires

    def take(self, code: str) -> bool:
        expires = self._codes.pop(code.strip().upper(), None)
        return expires is not None and expires > time.time()


@dataclass
class PeerCall:
    """Signed requests to one peer."""

    address: str
    port: int
    cluster: Cluster
    node_id: str

    @property
    def base(self) -> str:
        return f"http://{self.address}:{self.port}"

    async def request(self, method: str, path: str, body: Any = None, limits: httpx2.Timeout = TIMEOUT) -> Any:
        data = b"" if body is None else json.dumps(body).encode()
        headers = p.sign_request(self.cluster.key, self.cluster.cluster_id, self.node_id, method, path, data)
        headers["content-type"] = "application/json"
        async with httpx2.AsyncClient(timeout=limits) as client:
            try:
                response = await client.request(method, self.base + path, content=data, headers=headers)
            except httpx2.TransportError as exc:
                raise PeerError(f"cannot reach {self.base}: {exc}") from exc
        if response.status_code >= 400:
            raise PeerError(f"{self.base} refused {path}: {_message(response)}")
        return response.json()


def _message(response: httpx2.Response) -> str:
    try:
        return str(response.json().get("message") or response.text)
    except ValueError:
        return response.text or response.reason_phrase


async def contact(
    entry: dict[str, Any],
    peer_auth: dict[str, Any],
    cluster: Cluster,
    me: dict[str, Any],
    store: Store,
    server_list: dict[str, Any],
) -> dict[str, Any]:
    """Ask another server to join the cluster, authorised by its admin credentials or pairing code."""
    identity = store.require_identity()
    body = {
        "auth": peer_auth,
        "cluster_id": cluster.cluster_id,
        "cluster_key": cluster.key,
        "node": {"node_id": identity.node_id, "name": identity.name, "address": me["address"], "port": me["port"]},
        "server_list": server_list,
        **p.versions(),
    }
    url = f"http://{entry['address']}:{entry['port']}/peer/v1/pair"
    async with httpx2.AsyncClient(timeout=TIMEOUT) as client:
        try:
            response = await client.post(url, json=body)
        except httpx2.TransportError as exc:
            raise Invalid(
                f"cannot reach {entry['name']} at {entry['address']}:{entry['port']} ({type(exc).__name__}); "
                "check the address and that thinsync runs there"
            ) from exc
    if response.status_code in (401, 403):
        raise Invalid(f"{entry['name']} refused to pair: {_message(response)}")
    if response.status_code >= 400:
        raise Invalid(f"{entry['name']} could not pair: {_message(response)}")
    return response.json()  # type: ignore[no-any-return]


async def install_primary(
    store: Store, settings: Settings, primary: dict[str, Any], cluster: Cluster, reason: str
) -> dict[str, Any]:
    """Back up this server's configuration, drop it and its log, install the primary's snapshot and
    take a new incarnation. Returns the backup's manifest."""
    identity = store.require_identity()
    call = PeerCall(primary["address"], primary["port"], cluster, identity.node_id)
    snap = await call.request("GET", "/peer/v1/snapshot", limits=httpx2.Timeout(300.0, connect=5.0))
    if not isinstance(snap, dict) or "objects" not in snap or "vector" not in snap:
        raise PeerError(f"{primary['name']} sent a malformed snapshot")
    backup = await asyncio.to_thread(archive.create, store, settings.backups, reason)  # before anything is dropped
    await store.replace_all(snap)
    await asyncio.to_thread(store.new_incarnation)
    return backup


def check_auth_shape(peer_auth: Any) -> dict[str, Any]:
    if not isinstance(peer_auth, dict) or not (
        ("username" in peer_auth and "password" in peer_auth) or "pairing_code" in peer_auth
    ):
        raise BadRequest(
            'turning automatic synchronization on needs peer_auth: {"username", "password"} of an admin '
            'of the other server, or {"pairing_code"} shown by it (POST /api/v1/pairing-code there)'
        )
    return peer_auth


def new_cluster() -> Cluster:
    return Cluster(secrets.token_hex(8), secrets.token_hex(32))


def require_credentials(ok: bool) -> None:
    if not ok:
        raise Unauthorized("the pairing credentials are wrong (user name and password, or pairing code)")
