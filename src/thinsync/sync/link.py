"""The outbound link to one peer: push this server's log, keep the peer's vector, check digests.

Each server pushes to every other server over its own WebSocket connection; the socket is only a
doorbell and a pipe: what the peer lacks is always read from the durable log by version vector,
so a lost connection loses nothing — the next session starts from the peer's vector.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from thinsync.events.log import EventLog
from thinsync.store import ChangeSet, Store
from thinsync.store.digest import differing_buckets
from thinsync.sync import protocol as p
from thinsync.sync.state import PeerState

log = logging.getLogger(__name__)

# Receive deadlines use asyncio.timeout, never wait_for: on Python 3.11 wait_for swallows a cancellation
# that arrives together with the awaited message, and a link that cannot be stopped blocks reconcile.
HEARTBEAT_S = 1.0
RECENT = 10_000
DEAD_AFTER_S = 3.0
WINDOW = 4
SNAPSHOT_CHUNK = 2000
# Digests are compared again once the state has been still this long after it moved.
QUIET_S = 1.0


@dataclass(frozen=True)
class Cluster:
    cluster_id: str
    key: str


class PeerGone(Exception):
    """The session ended; the link reconnects."""


class Pusher:
    def __init__(
        self,
        store: Store,
        peer: PeerState,
        cluster: Callable[[], Cluster | None],
        events: EventLog,
        max_skew_s: float,
        digest_interval_s: float,
        on_change: Callable[[], None],
        on_rolled_back: Callable[[], Awaitable[None]],
    ) -> None:
        self.store = store
        self.peer = peer
        self._cluster = cluster
        self._events = events
        self._max_skew_s = max_skew_s
        self._digest_interval_s = digest_interval_s
        self._on_change = on_change
        self._on_rolled_back = on_rolled_back
        self._doorbell = asyncio.Event()
        self._ringing = False
        self._digest_now = asyncio.Event()
        self._retry = asyncio.Event()
        # Set when the link may have just become quiet (an ack emptied the window, the peer's changes
        # were applied here): the digest loop looks at once instead of at its next half-second tick.
        self._quiet = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._in_flight: list[float] = []
        self._acked = asyncio.Condition()
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # Change sets as they are committed (appended by the writer thread, in log order): the live
        # path sends from here without reading the log back; any gap falls back to the log.
        self._recent: collections.deque[ChangeSet] = collections.deque(maxlen=RECENT)

    def start(self) -> None:
        self.store.subscribe(self._ring)
        self._task = asyncio.create_task(self._run(), name=f"push-{self.peer.name}")

    async def stop(self) -> None:
        self._stopping = True
        self.store.unsubscribe(self._ring)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def _ring(self, changes: list[ChangeSet]) -> None:
        self._recent.extend(changes)
        # One wake-up of the event loop per burst of commits, not one per change set.
        if self._ringing:
            return
        loop = self._task.get_loop() if self._task else None
        if loop is not None and not loop.is_closed():
            self._ringing = True
            loop.call_soon_threadsafe(self._answer)

    def _answer(self) -> None:
        self._ringing = False
        self._doorbell.set()

    def retry_now(self) -> None:
        """The peer is reachable again (it connected to this server): end the wait before the next attempt."""
        self._retry.set()

    def settle_soon(self) -> None:
        """Changes from the peer were applied here: if no comparison has been made since the link came
        up (a catch-up), compare as soon as both sides hold the same; otherwise the tick suffices."""
        if self.peer.digest_match is None:
            self._quiet.set()

    def poke(self) -> None:
        """Check digests now (after 'Synchronize now')."""
        self._digest_now.set()
        self._doorbell.set()

    # ------------------------------------------------------------------ session loop

    async def _run(self) -> None:
        delay = 0.1
        while not self._stopping:
            cluster = self._cluster()
            if cluster is None:
                await asyncio.sleep(1.0)
                continue
            self._retry.clear()  # a `retry_now` from here on ends the wait after this attempt
            try:
                await self._session(cluster)
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except p.PeerRefused as exc:
                self._down(str(exc.message), degraded=True)
                delay = 5.0
            except InvalidStatus as exc:
                status = exc.response.status_code
                reason = (
                    "the peer refused the cluster key (re-pair the servers)"
                    if status in (401, 403)
                    else (f"the peer answered HTTP {status}")
                )
                self._down(reason, degraded=status in (401, 403))
                delay = 2.0
            except (OSError, WebSocketException, PeerGone, TimeoutError, p.FrameError) as exc:
                self._down(str(exc) or type(exc).__name__)
                delay = min(1.0, delay * 2)
            except Exception as exc:  # a bug: keep the link alive, but say so loudly
                log.exception("link to %s failed", self.peer.name)
                self._down(f"internal error: {exc}")
                delay = 1.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._retry.wait()

    def _down(self, reason: str, degraded: bool = False) -> None:
        was = self.peer.connected
        self.peer.connected = False
        if self.peer.down_since is None:
            self.peer.down_since = time.time()
        self.peer.error(reason)
        self.peer.degraded = reason if degraded else None
        if was:
            self._events.record("sync", f"link to {self.peer.name} lost: {reason}", level="warning")
        self._on_change()

    async def _session(self, cluster: Cluster) -> None:
        identity = self.store.require_identity()
        url = f"ws://{self.peer.address}:{self.peer.port}/peer/v1/link"
        headers = p.sign_request(cluster.key, cluster.cluster_id, identity.node_id, "GET", "/peer/v1/link", b"")
        async with connect(
            url,
            additional_headers=headers,
            max_size=p.MAX_FRAME,
            open_timeout=DEAD_AFTER_S,
            close_timeout=1.0,
            ping_interval=None,
            # Change pages are small next to a LAN's bandwidth; compressing them cost more CPU than it saved.
            compression=None,
        ) as ws:
            codec = p.FrameCodec(cluster.key, headers[p.H_NONCE], "c")
            sent_at = self.store.clock.time()  # clock readings exchanged with the peer use this server's clock
            async with asyncio.timeout(DEAD_AFTER_S):
                hello = codec.decode(await ws.recv())
            self._check_hello(hello, identity.node_id, sent_at)
            mine = await asyncio.to_thread(self.store.vector)
            await self._check_origins(hello, identity.origin, mine)
            await ws.send(
                codec.encode(
                    {"t": "hello", "name": identity.name, "origin": identity.origin, **p.versions(), "vector": mine}
                )
            )
            # What the peer holds is what it says now: a page sent before a lost connection may never
            # have arrived, so nothing learnt from sending survives a reconnect.
            self.peer.theirs = dict(hello["vector"])
            self.peer.connected = True
            self.peer.degraded = None
            if self.peer.down_since is not None:
                self._events.record("sync", f"link to {self.peer.name} is up again")
            self.peer.down_since = None
            self._on_change()
            self._in_flight.clear()
            self._replies = asyncio.Queue()
            tasks = [asyncio.create_task(self._read(ws, codec))]
            try:
                await self._catch_up_snapshot(ws, codec, hello["vector"])
                tasks.append(asyncio.create_task(self._push(ws, codec, hello["vector"])))
                tasks.append(asyncio.create_task(self._heartbeat(ws, codec)))
                tasks.append(asyncio.create_task(self._digests(ws, codec)))
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
                raise PeerGone("link closed")
            finally:
                # Every part of the session ends with it (also when the link is stopped), before the socket closes.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    def _check_hello(self, hello: dict[str, Any], my_node: str, sent_at: float) -> None:
        if hello.get("t") != "hello":
            raise p.FrameError("the peer did not say hello")
        mismatch = p.version_mismatch(hello)
        self.peer.versions = {
            "protocol": hello.get("protocol"),
            "schema": hello.get("schema"),
            "thinsync": hello.get("version"),
        }
        if mismatch:
            raise p.PeerRefused(f"sync paused: {mismatch}; upgrade both servers to the same release")
        if hello.get("node_id") == my_node:
            raise p.PeerRefused(
                "the peer has this server's own node id (a copied data directory); re-initialise one of them"
            )
        if self.peer.node_id and hello.get("node_id") != self.peer.node_id:
            self._events.record("sync", f"{self.peer.name} now answers as node {hello.get('node_id')}", level="warning")
        self.peer.node_id = str(hello.get("node_id"))
        now = self.store.clock.time()
        self.peer.clock_offset_ms = (float(hello.get("time", now)) - (sent_at + now) / 2) * 1000

    async def _check_origins(self, hello: dict[str, Any], own: str, mine: dict[str, int]) -> None:
        """Both servers' current origins against what the other holds of them.

        The peer holds all of the origin it writes under now, so none of it is sent back to it, unless
        this server holds more of that origin than the peer does (the peer's data was rolled back and,
        its clock having gone back too, it took an incarnation again). Likewise a peer that holds more
        of this server's current origin than this server shows this server's data was rolled back: it
        takes a new incarnation at once, so its next changes do not reuse numbers the peer holds."""
        theirs = hello.get("vector") or {}
        origin = hello.get("origin")
        self.peer.origin = None
        if isinstance(origin, str):
            if mine.get(origin, 0) > int(theirs.get(origin, 0)):
                self._events.record(
                    "sync",
                    f"{self.peer.name} holds fewer of its own current changes than this server: its data was "
                    "rolled back; its changes are sent back to it",
                    level="error",
                )
            else:
                self.peer.origin = origin
        if int(theirs.get(own, 0)) > mine.get(own, 0):
            self._events.record(
                "sync",
                f"{self.peer.name} holds more changes of this server's current incarnation than this server: "
                "this server's data was rolled back; taking a new incarnation and pulling them back",
                level="error",
            )
            await self._on_rolled_back()
            raise PeerGone("this server took a new incarnation; reconnecting")

    # ------------------------------------------------------------------ reading

    async def _read(self, ws: ClientConnection, codec: p.FrameCodec) -> None:
        while True:
            async with asyncio.timeout(DEAD_AFTER_S):
                message = codec.decode(await ws.recv())
            kind = message["t"]
            self.peer.acked_at = time.time()
            if kind == "ack":
                self.peer.learn(message["vector"])
                self.peer.last_sync = time.time()
                async with self._acked:
                    if self._in_flight:
                        self._in_flight.pop(0)
                    self.peer.oldest_unacked = self._in_flight[0] if self._in_flight else None
                    self._acked.notify_all()
                if not self._in_flight and self.peer.digest_match is None:
                    self._quiet.set()  # a catch-up may have just ended: compare without waiting for the tick
                self._on_change()
            elif kind == "pong":
                now = self.store.clock.time()
                sent = float(message["echo"])
                self.peer.rtt_ms = (now - sent) * 1000
                self.peer.clock_offset_ms = (float(message["time"]) - (sent + now) / 2) * 1000
                if "vector" in message:
                    self.peer.learn(message["vector"])
            elif kind == "error":
                code = message.get("code")
                text = str(message.get("message", code))
                if code == "clock_skew":
                    raise p.PeerRefused(text)
                raise PeerGone(f"peer reported: {text}")
            else:
                await self._replies.put(message)

    async def _reply(self, kind: str, wait_s: float = 30.0) -> dict[str, Any]:
        while True:
            async with asyncio.timeout(wait_s):
                message = await self._replies.get()
            if message["t"] == kind:
                return message

    # ------------------------------------------------------------------ pushing

    async def _catch_up_snapshot(self, ws: ClientConnection, codec: p.FrameCodec, theirs: dict[str, int]) -> None:
        """A peer behind what this log still holds gets a snapshot, merged by the per-field rule."""
        if not await asyncio.to_thread(self.store.lacks_history, theirs):
            return
        snap = await asyncio.to_thread(self.store.snapshot, True)  # encoded: sent as the rows hold it
        objects = snap["objects"]
        parts = max(1, -(-len(objects) // SNAPSHOT_CHUNK))
        self._events.record("sync", f"sending a snapshot of {len(objects)} objects to {self.peer.name}")
        for part in range(parts):
            chunk = objects[part * SNAPSHOT_CHUNK : (part + 1) * SNAPSHOT_CHUNK]
            message = {"t": "snapshot", "part": part, "parts": parts, "objects": chunk}
            if part == parts - 1:
                message["vector"] = snap["vector"]
            await ws.send(codec.encode(message))
        reply = await self._reply("snapshot_ack", wait_s=120)
        self.peer.learn(reply["vector"])

    async def _push(self, ws: ClientConnection, codec: p.FrameCodec, theirs: dict[str, int]) -> None:
        cursor = await asyncio.to_thread(self.store.first_missing_id, theirs)
        while True:
            self._doorbell.clear()
            fast = self._from_recent(cursor)
            if fast is not None:
                page, cursor = fast
            else:
                page, cursor = await asyncio.to_thread(
                    self.store.log_page, cursor, dict(self.peer.theirs), p.PAGE_SETS, self.peer.origin
                )
            if not page:
                await self._doorbell.wait()
                continue
            async with self._acked:
                await self._acked.wait_for(lambda: len(self._in_flight) < WINDOW)
                self._in_flight.append(page[0].applied_at or time.time())
                if self.peer.oldest_unacked is None:
                    self.peer.oldest_unacked = self._in_flight[0]
            for body in p.chunks({"t": "changes", "sets": [p.set_to_json(c) for c in page]}):
                await ws.send(codec.encode_json(body))

    def _from_recent(self, cursor: int) -> tuple[list[ChangeSet], int] | None:
        """The next sets after `cursor` from memory, or None when memory does not start right there."""
        while self._recent and self._recent[0].id <= cursor:
            self._recent.popleft()
        if not self._recent or self._recent[0].id != cursor + 1:
            return None
        page: list[ChangeSet] = []
        lacks = self.peer.lacks
        while self._recent and len(page) < p.PAGE_SETS and self._recent[0].id == cursor + 1:
            change = self._recent.popleft()
            cursor = change.id
            if lacks(change.origin, change.seq):
                page.append(change)
        return page, cursor

    async def _heartbeat(self, ws: ClientConnection, codec: p.FrameCodec) -> None:
        while True:
            await ws.send(codec.encode({"t": "ping", "time": self.store.clock.time()}))
            await asyncio.sleep(HEARTBEAT_S)
            if time.time() - self.peer.acked_at > DEAD_AFTER_S:
                raise PeerGone(f"no answer from {self.peer.name} for {DEAD_AFTER_S:.0f} s")

    # ------------------------------------------------------------------ digests and repair

    async def _digests(self, ws: ClientConnection, codec: p.FrameCodec) -> None:
        """Compare digests when the link is quiet: right after a catch-up, every `digest_interval_s`,
        and once the state has not moved for QUIET_S since it last moved (so after a burst of changes
        the shown digests are those of the current state). Those last comparisons are spaced by ten
        times what the previous one took, so they cost at most a tenth of the time."""
        last = 0.0
        spacing = 0.0
        seen: dict[str, int] | None = None
        moved_at = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await _either(self._digest_now, self._quiet)
            self._quiet.clear()
            now = time.monotonic()
            mine = await asyncio.to_thread(self.store.vector)
            if mine != seen:
                seen, moved_at = mine, now
            due = self._digest_now.is_set() or now - last >= self._digest_interval_s
            stale = self.peer.digest_vector != mine and now - moved_at >= QUIET_S and now - last >= spacing
            settled = not self._in_flight and p.lag(mine, self.peer.theirs) == 0 and not p.lag(self.peer.theirs, mine)
            if not settled or not (due or stale or self.peer.digest_match is None):
                continue
            self._digest_now.clear()
            last = time.monotonic()
            await self._compare(ws, codec)
            spacing = min(self._digest_interval_s, 10 * (time.monotonic() - last))

    async def _compare(self, ws: ClientConnection, codec: p.FrameCodec) -> None:
        await ws.send(codec.encode({"t": "digest_req"}))
        reply = await self._reply("digest")
        digest, mine_vector = await asyncio.to_thread(self.store.digest_at)
        if reply["vector"] != mine_vector:
            return  # something moved meanwhile; compare on the next round
        self.peer.digest = reply["digest"]
        self.peer.digest_checked = time.time()
        self.peer.digest_vector = dict(mine_vector)
        if digest.hex() == reply["digest"]:
            if self.peer.digest_match is False:
                self._events.record("sync", f"configuration identical to {self.peer.name} again")
            self.peer.digest_match = True
            self._on_change()
            return
        self.peer.digest_match = False
        self.peer.repairing = True
        self._on_change()
        self._events.record("sync", f"digest differs from {self.peer.name}: repairing", level="warning")
        try:
            await ws.send(codec.encode({"t": "buckets_req"}))
            theirs = await self._reply("buckets")
            buckets = set(differing_buckets(digest.bucket_hex(), theirs["buckets"]))
            mine_objects = await asyncio.to_thread(self.store.objects_in_buckets, buckets)
            await ws.send(codec.encode({"t": "repair", "buckets": sorted(buckets), "objects": mine_objects}))
            reply = await self._reply("repair")
            out_of_band = same_stamps_other_values(mine_objects, reply["objects"])
            changed = await self.store.merge_objects(reply["objects"])
            if out_of_band:
                self._events.record(
                    "sync",
                    f"out-of-band edit detected on {', '.join(out_of_band[:5])}: same stamps, different values; "
                    "settled by value hash on both servers",
                    level="error",
                )
            self._events.record(
                "sync", f"repaired {len(buckets)} buckets with {self.peer.name} ({changed} objects changed here)"
            )
            self.peer.repairs += 1
        finally:
            self.peer.repairing = False
            self.peer.digest_match = None
            self._digest_now.set()


async def _either(a: asyncio.Event, b: asyncio.Event) -> None:
    """Return when either event is set."""
    waits = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def same_stamps_other_values(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[str]:
    """Objects whose field holds another value under the same stamp on each side (an out-of-band edit)."""
    index = {(o["kind"], o["name"]): o for o in mine}
    found = []
    for other in theirs:
        local = index.get((other["kind"], other["name"]))
        if local is None:
            continue
        for field_name, stamp in other["stamps"].items():
            if local["stamps"].get(field_name) == stamp and json.dumps(
                local["vals"].get(field_name), sort_keys=True
            ) != (json.dumps(other["vals"].get(field_name), sort_keys=True)):
                found.append(f"{other['kind']}/{other['name']}")
                break
    return found
