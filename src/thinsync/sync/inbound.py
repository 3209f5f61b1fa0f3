"""The receiving end of a peer's link: apply its change sets in order, acknowledge, answer checks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from thinsync import __version__
from thinsync.events.log import EventLog
from thinsync.store import ChangeSet, Store
from thinsync.store.replica import GapError, SkewError
from thinsync.sync import protocol as p
from thinsync.sync.link import DEAD_AFTER_S, same_stamps_other_values

log = logging.getLogger(__name__)
# Pages of changes applied together when they arrive faster than they are applied (at most the
# sender's window of unacknowledged pages is ever waiting).
GROUP_PAGES = 8


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
        self._sessions: set[asyncio.Task[Any]] = set()
        # node id -> (origin it writes under, its session) of every peer connected now
        self._live: dict[str, tuple[str, asyncio.Task[Any]]] = {}

    def drop_sessions(self) -> None:
        """End every open session: after this server's data was replaced (pairing), what a peer learnt
        from its hello is stale, so it must reconnect and say hello again."""
        for task in list(self._sessions):
            task.cancel()

    async def serve(self, transport: Transport, key: str, claim: p.PeerClaim) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await self._serve(transport, key, claim)
        finally:
            self._sessions.discard(task)

    async def _serve(self, transport: Transport, key: str, claim: p.PeerClaim) -> None:
        identity = self.store.require_identity()
        codec = p.FrameCodec(key, claim.nonce, "s")
        vector = await asyncio.to_thread(self.store.vector)
        await transport.send(
            codec.encode(
                {
                    "t": "hello",
                    "node_id": identity.node_id,
                    # The origin this server writes under now: every change set of it is held here, so
                    # the other side never sends one back (it would arrive as a duplicate, costing both
                    # servers a transaction on the latency path).
                    "origin": identity.origin,
                    "name": identity.name,
                    **p.versions(),
                    "version": __version__,
                    "vector": vector,
                    "time": self.store.clock.time(),
                }
            )
        )
        async with asyncio.timeout(DEAD_AFTER_S):
            hello = codec.decode(await transport.receive())
        name = str(hello.get("name")) if hello.get("t") == "hello" else None
        mismatch = p.version_mismatch(hello)
        if mismatch:
            await transport.send(codec.encode({"t": "error", "code": "version", "message": mismatch}))
            return
        origin = str(hello.get("origin") or "")
        holder = self._live.get(claim.node_id)
        if origin and holder is not None and holder[0] != origin and not holder[1].done():
            # Every start takes a new origin, so a restarted peer looks the same until its old session
            # is found dead (within DEAD_AFTER_S); two live servers stay refused.
            message = (
                f"two servers with node id {claim.node_id} are connected ('{name}' twice): one runs on a copy "
                "of the other's data directory; this link is refused until one of them stops"
            )
            self._events.record("sync", message, level="error")
            await transport.send(codec.encode({"t": "error", "code": "duplicate_node", "message": message}))
            return
        task = asyncio.current_task()
        assert task is not None
        if origin:
            self._live[claim.node_id] = (origin, task)
        try:
            await self._session(transport, codec, claim, name, hello)
        finally:
            if self._live.get(claim.node_id, ("", None))[1] is task:
                del self._live[claim.node_id]

    async def _session(
        self, transport: Transport, codec: p.FrameCodec, claim: p.PeerClaim, name: str | None, hello: dict[str, Any]
    ) -> None:
        self._on_peer(claim.node_id, name, hello.get("vector"), True)
        send_lock = asyncio.Lock()

        async def send(message: dict[str, Any]) -> None:
            async with send_lock:
                await transport.send(codec.encode(message))

        # Pings are answered by the reader at once, while the worker applies (a large restore can
        # take seconds): the peer must not take a long apply for a dead link.
        work: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def read() -> None:
            assembler = p.Assembler()
            while True:
                async with asyncio.timeout(DEAD_AFTER_S):
                    frame = await transport.receive()
                body = codec.open(frame)
                if body.startswith(p.CHANGES_PREFIX):
                    work.put_nowait({"t": "changes", "body": body})  # parsed where it is applied
                    continue
                message = assembler.feed(p.parse_message(body))
                if message is None:
                    continue
                if message["t"] == "ping":
                    vector = await asyncio.to_thread(self.store.vector)
                    await send(
                        {"t": "pong", "echo": message["time"], "time": self.store.clock.time(), "vector": vector}
                    )
                else:
                    work.put_nowait(message)

        async def worker() -> None:
            snapshot: list[dict[str, Any]] = []
            carried: dict[str, Any] | None = None
            while True:
                message = carried if carried is not None else await work.get()
                carried = None
                if message["t"] == "changes":
                    # Pages already waiting behind this one are applied with it: started together, they
                    # reach the writer together and share its transaction (group commit), one job and
                    # one acknowledgement each, in order.
                    pages = [message]
                    while len(pages) < GROUP_PAGES and not work.empty():
                        following = work.get_nowait()
                        if following["t"] != "changes":
                            carried = following
                            break
                        pages.append(following)
                    if not await self._apply_in_order(claim.node_id, name, pages, send):
                        return
                    continue
                reply = await self._handle(claim.node_id, name, message, snapshot)
                if reply is not None:
                    await send(reply)
                    if reply["t"] == "error":
                        return

        tasks = [asyncio.create_task(read()), asyncio.create_task(worker())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            self._on_peer(claim.node_id, name, None, False)

    async def _handle(
        self, node_id: str, name: str | None, message: dict[str, Any], snapshot: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        kind = message["t"]
        if kind == "changes":
            return await self._apply(node_id, name, message)
        if kind == "snapshot":
            snapshot.extend(message["objects"])
            if "vector" not in message:
                return None
            changed = await self.store.merge_snapshot({"objects": list(snapshot), "vector": message["vector"]})
            self._events.record(
                "sync", f"merged a snapshot of {len(snapshot)} objects from {name} ({changed} changed here)"
            )
            snapshot.clear()
            return {"t": "snapshot_ack", "vector": await asyncio.to_thread(self.store.vector)}
        if kind == "digest_req":
            digest, vector = await asyncio.to_thread(self.store.digest_at)
            return {"t": "digest", "digest": digest.hex(), "vector": vector}
        if kind == "buckets_req":
            digest, vector = await asyncio.to_thread(self.store.digest_at)
            return {"t": "buckets", "buckets": digest.bucket_hex(), "vector": vector}
        if kind == "repair":
            buckets = {int(b) for b in message["buckets"]}
            # Answer with what this server held before merging: the other side must see the same
            # differences (an out-of-band edit, equal stamps with other values) to raise the alarm too.
            mine = await asyncio.to_thread(self.store.objects_in_buckets, buckets)
            out_of_band = same_stamps_other_values(mine, message["objects"])
            changed = await self.store.merge_objects(message["objects"])
            if out_of_band:
                self._events.record(
                    "sync",
                    f"out-of-band edit detected on {', '.join(out_of_band[:5])}: same stamps, different values; "
                    "settled by value hash on both servers",
                    level="error",
                )
            if changed:
                self._events.record("sync", f"repair from {name}: {changed} objects changed here", level="warning")
            return {"t": "repair", "objects": mine}
        raise p.FrameError(f"unknown message type {kind!r}")

    async def _apply_in_order(
        self,
        node_id: str,
        name: str | None,
        pages: list[dict[str, Any]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> bool:
        """Apply pages (each its own writer job, submitted in order) and acknowledge each in order;
        False once one is refused (the session ends: the peer resumes from the vectors)."""
        if len(pages) == 1:  # the live case: no task in between (latency)
            reply = await self._apply(node_id, name, pages[0])
            await send(reply)
            return reply["t"] != "error"
        applies = [asyncio.ensure_future(self._apply(node_id, name, page)) for page in pages]
        try:
            for apply in applies:
                reply = await apply
                await send(reply)
                if reply["t"] == "error":
                    return False
            return True
        finally:
            for apply in applies:
                if not apply.done():
                    apply.cancel()  # a job the writer has not started yet is dropped
                elif not apply.cancelled():
                    apply.exception()  # retrieved: the first failure is the one that propagates

    async def _apply(self, node_id: str, name: str | None, message: dict[str, Any]) -> dict[str, Any]:
        body = message.get("body")
        sets: list[ChangeSet] | Callable[[], list[ChangeSet]] = (
            (lambda: p.parse_sets(body))
            if isinstance(body, str)
            else [p.set_from_json(s) for s in message.get("sets", [])]
        )
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
        self._on_peer(node_id, name, applied.received, True)
        return {"t": "ack", "vector": applied.vector}
