"""Manual synchronization (auto-sync off): a one-shot copy of the whole configuration from another
server to this one, with a dry-run diff and an automatic backup of this server first.

It reads the other server through its REST API with an admin's credentials (no cluster key is
needed) and writes here as one ordinary change set. The server list, admin accounts and security
groups are left alone, as in a restore."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2

from thinsync.backup import archive
from thinsync.config.service import ConfigService
from thinsync.errors import Invalid
from thinsync.model.registry import KINDS
from thinsync.model.validate import SINGLETON_NAME
from thinsync.settings import Settings
from thinsync.store import Op, Store

EXCLUDED = frozenset({"server-list", "admins", "security-groups", "license"})
COPIED = [k for k, spec in KINDS.items() if not spec.internal and k not in EXCLUDED]
DERIVED = ("version", "problems")


async def fetch(address: str, port: int, peer_auth: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Every copied object of the other server: {kind: {name: body}}."""
    base = f"http://{address}:{port}"
    async with httpx2.AsyncClient(base_url=base, timeout=httpx2.Timeout(60.0, connect=5.0)) as client:
        try:
            login = await client.post(
                "/api/v1/login", json={"username": peer_auth.get("username"), "password": peer_auth.get("password")}
            )
        except httpx2.TransportError as exc:
            raise Invalid(f"cannot reach {base} ({type(exc).__name__})") from exc
        if login.status_code != 200:
            raise Invalid(f"{base} refused the credentials: {login.json().get('message', login.text)}")
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for kind in COPIED:
            out[kind] = {}
            if KINDS[kind].singleton:
                body = (await client.get(f"/api/v1/{kind}", headers=headers)).json()
                if body.get("version"):
                    out[kind][SINGLETON_NAME] = body
                continue
            cursor = None
            while True:
                params: dict[str, str] = {"cursor": cursor} if cursor else {}
                page = (await client.get(f"/api/v1/{kind}", headers=headers, params=params)).json()
                for obj in page["items"]:
                    out[kind][obj["name"]] = obj
                cursor = page.get("next")
                if not cursor:
                    break
    return out


def _clean(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in DERIVED}


async def local_objects(config: ConfigService) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in COPIED:
        out[kind] = {}
        if KINDS[kind].singleton:
            body = await config.get(kind)
            if body.get("version"):
                out[kind][SINGLETON_NAME] = body
            continue
        cursor = None
        while True:
            page = await config.list_page(kind, cursor)
            for obj in page["items"]:
                out[kind][obj["name"]] = obj
            cursor = page["next"]
            if not cursor:
                break
    return out


def diff(source: dict[str, dict[str, Any]], target: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """What copying `source` over `target` would do: {"added": {kind: [names]}, "changed": ..., "removed": ...}."""
    out: dict[str, dict[str, list[str]]] = {"added": {}, "changed": {}, "removed": {}}
    for kind in COPIED:
        src, dst = source.get(kind, {}), target.get(kind, {})
        added = sorted(set(src) - set(dst))
        removed = sorted(set(dst) - set(src)) if not KINDS[kind].singleton else []
        changed = sorted(n for n in set(src) & set(dst) if _clean(src[n]) != _clean(dst[n]))
        for key, names in (("added", added), ("changed", changed), ("removed", removed)):
            if names:
                out[key][kind] = names
    return out


async def copy_here(
    store: Store,
    config: ConfigService,
    settings: Settings,
    source: dict[str, dict[str, Any]],
    author: str,
    label: str,
) -> dict[str, Any]:
    """Back up this server, then make its configuration equal to `source` in one change set."""
    target = await local_objects(config)
    changes = diff(source, target)
    backup = await asyncio.to_thread(archive.create, store, settings.backups, f"before manual sync from {label}")
    ops = []
    for kind in COPIED:
        for name in changes["added"].get(kind, []) + changes["changed"].get(kind, []):
            ops.append(Op(kind, name, "put", _clean(source[kind][name])))
        for name in changes["removed"].get(kind, []):
            ops.append(Op(kind, name, "delete"))
    if ops:
        await config.write(author, f"manual synchronization from {label}", ops)
    return {"diff": changes, "backup": backup["id"], "changed_objects": len(ops)}
