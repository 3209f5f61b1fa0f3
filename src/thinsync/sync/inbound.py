"""The receiving end of a peer's link: apply its change sets in order, acknowledge, answer checks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from thinsync import __version__
from thinsync.events.log import EventLog
from thinsync.store import Store
from thinsync.store.replica import GapError, SkewError
from thinsync.sync import protocol as p
from thinsync.sync.link import DEAD_AFTER_S

log = logging.getLogger(__name__)


@dataclass
class Transport:
    """What the HTTP adapter gives the receiver: text frames in and out."""

    receive: Callable[[], Awaitable[str]]
    send: Callable[[str], Awaitable[None]]


class Receiver:
    def __init__(
        self,
        store: Store,
        events: EventLog,
        max_skew_s: float,
        on_peer: Callable[[str, str | None, dict[str, int] | None, bool], None],
    ) -> None:
        self.store = store
        self._events = events
        self._max_skew_s = max_skew_s
        # on_peer(node_id, name, vector it holds, connected)
        self._on_peer = on_peer

    async def serve(self, transport: Transport, key: str, claim: p.PeerClaim) -> None:
        identity = self.store.require_identity()
        codec = p.FrameCodec(key, claim.nonce, "s")
        vector = await asyncio.to_thread(self.store.vector)
        await transport.send(
            codec.encode(
                {
                    "t": "hello",
                    "node_id": identity.node_id,
                    "name": identity.name,
                    **p.versions(),
                    "version": __version__,
                    "vector": vector,
                    "time": time.time(),
                }
            )
        )
        hello = codec.decode(await asyncio.wait_for(transport.receive(), DEAD_AFTER_S))
        name = str(hello.get("name")) if hello.get("t") == "hello" else None
        mismatch = p.version_mismatch(hello)
        if mismatch:
            await transport.send(codec.encode({"t": "error", "code": "version", "message": mismatch}))
            return
        self._on_peer(claim.node_id, name, hello.get("vector"), True)
        snapshot_parts: list[dict[str, Any]] = []
        try:
            while True:
                message = codec.decode(await asyncio.wait_for(transport.receive(), DEAD_AFTER_S))
                kind = message["t"]
                if kind == "changes":
                    reply = await self._apply(claim.node_id, name, message)
                    await transport.send(codec.encode(reply))
                    if reply["t"] == "error":
                        return
                elif kind == "ping":
                    vector = await asyncio.to_thread(self.store.vector)
                    await transport.send(
                        codec.encode({"t": "pong", "echo": message["time"], "time": time.time(), "vector": vector})
                    )
                elif kind == "snapshot":
                    snapshot_parts.extend(message["objects"])
                    if "vector" in message:
                        changed = await self.store.merge_snapshot(
                            {"objects": snapshot_parts, "vector": message["vector"]}
                        )
                        self._events.record(
                            "sync",
                            f"merged a snapshot of {len(snapshot_parts)} objects from {name} ({changed} changed here)",
                        )
                        snapshot_parts = []
                        vector = await asyncio.to_thread(self.store.vector)
                        await transport.send(codec.encode({"t": "snapshot_ack", "vector": vector}))
                elif kind == "digest_req":
                    digest, vector = await asyncio.to_thread(self.store.digest_at)
                    await transport.send(codec.encode({"t": "digest", "digest": digest.hex(), "vector": vector}))
                elif kind == "buckets_req":
                    digest, vector = await asyncio.to_thread(self.store.digest_at)
                    await transport.send(
                        codec.encode({"t": "buckets", "buckets": digest.bucket_hex(), "vector": vector})
                    )
                elif kind == "repair":
                    buckets = {int(b) for b in message["buckets"]}
                    changed = await self.store.merge_objects(message["objects"])
                    if changed:
                        self._events.record(
                            "sync", f"repair from {name}: {changed} objects changed here", level="warning"
                        )
                    mine = await asyncio.to_thread(self.store.objects_in_buckets, buckets)
                    await transport.send(codec.encode({"t": "repair", "objects": mine}))
                else:
                    raise p.FrameError(f"unknown message type {kind!r}")
        finally:
            self._on_peer(claim.node_id, name, None, False)

    async def _apply(self, node_id: str, name: str | None, message: dict[str, Any]) -> dict[str, Any]:
        sets = [p.set_from_json(s) for s in message.get("sets", [])]
        try:
            applied = await self.store.apply_remote(sets, self._max_skew_s)
        except SkewError as exc:
            self._events.record("sync", f"not applying changes from {name}: {exc.message}", level="error")
            return {"t": "error", "code": "clock_skew", "message": exc.message}
        except GapError as exc:
            return {"t": "error", "code": "gap", "message": exc.message}
        if applied.conflicts:
            self._events.record(
                "sync", f"{applied.conflicts} conflicts recorded with changes from {name}", level="warning"
            )
        vector = await asyncio.to_thread(self.store.vector)
        self._on_peer(node_id, name, {s.origin: s.seq for s in sets}, True)
        return {"t": "ack", "vector": vector}
