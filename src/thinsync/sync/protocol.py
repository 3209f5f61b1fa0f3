"""Peer protocol: signed HTTP requests, signed WebSocket frames, message limits. Pure (no I/O).

Every peer request carries the sender's node id, the cluster id, a time, a nonce and an
HMAC-SHA256 over them and the body, keyed by the cluster key both servers received at pairing.
Link frames are `<seq> <hmac> <json>`, where the HMAC also covers the connection's nonce, the
direction and the frame sequence number, so a frame cannot be replayed, reordered or moved to
another connection.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from thinsync import PROTOCOL_VERSION, jsonfmt
from thinsync.errors import ThinsyncError, Unauthorized
from thinsync.store.changes import ChangeSet, Item
from thinsync.store.schema import SCHEMA_VERSION

MAX_FRAME = 16 * 1024 * 1024
# Requests dated further from the receiver's clock are refused; generous, because clocks of
# paired servers may be minutes apart (that is reported, not fatal).
MAX_REQUEST_AGE_S = 3600.0
PAGE_SETS = 2000
# A message larger than this (a restore of thousands of objects is one change set) travels in
# chunks of this size and is put together, then applied atomically, by the receiver.
CHUNK_BYTES = 1024 * 1024
MAX_MESSAGE = 256 * 1024 * 1024

H_NODE = "x-thinsync-node"
H_CLUSTER = "x-thinsync-cluster"
H_TIME = "x-thinsync-time"
H_NONCE = "x-thinsync-nonce"
H_SIGNATURE = "x-thinsync-signature"


class PeerRefused(ThinsyncError):
    status = 403
    code = "peer_refused"


def versions() -> dict[str, int]:
    return {"protocol": PROTOCOL_VERSION, "schema": SCHEMA_VERSION}


def version_mismatch(theirs: Mapping[str, Any]) -> str | None:
    """A plain sentence naming the versions that differ, or None."""
    mine = versions()
    differ = [f"{k} {theirs.get(k)} there, {v} here" for k, v in mine.items() if theirs.get(k) != v]
    return ("incompatible versions: " + "; ".join(differ)) if differ else None


def _mac(key: str, *parts: str | bytes) -> str:
    h = hmac.new(bytes.fromhex(key), digestmod=hashlib.sha256)
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def sign_request(key: str, cluster_id: str, node_id: str, method: str, path: str, body: bytes) -> dict[str, str]:
    """Headers that authenticate one peer request."""
    stamp = f"{time.time():.3f}"
    nonce = secrets.token_hex(16)
    body_hash = hashlib.sha256(body).hexdigest()
    return {
        H_NODE: node_id,
        H_CLUSTER: cluster_id,
        H_TIME: stamp,
        H_NONCE: nonce,
        H_SIGNATURE: _mac(key, method.upper(), path, node_id, cluster_id, stamp, nonce, body_hash),
    }


@dataclass(frozen=True)
class PeerClaim:
    node_id: str
    nonce: str


class NonceCache:
    """Nonces seen recently: a second request with the same nonce is a replay."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def check_and_add(self, nonce: str, now: float) -> bool:
        with self._lock:
            while self._seen and (
                len(self._seen) >= self._capacity or next(iter(self._seen.values())) < now - 2 * MAX_REQUEST_AGE_S
            ):
                self._seen.popitem(last=False)
            if nonce in self._seen:
                return False
            self._seen[nonce] = now
            return True


def verify_request(
    key: str | None,
    cluster_id: str | None,
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    nonces: NonceCache,
    now: float,
) -> PeerClaim:
    """Check a peer request's signature; raises Unauthorized (401) or PeerRefused (403)."""
    missing = [h for h in (H_NODE, H_CLUSTER, H_TIME, H_NONCE, H_SIGNATURE) if not headers.get(h)]
    if missing:
        raise Unauthorized("peer requests must be signed with the cluster key (see docs/operations.md, pairing)")
    if key is None or cluster_id is None:
        raise PeerRefused("this server is not paired with any other server")
    if not hmac.compare_digest(headers[H_CLUSTER], cluster_id):
        raise PeerRefused("the request comes from another cluster")
    try:
        sent = float(headers[H_TIME])
    except ValueError:
        raise Unauthorized("the peer request's time is not a number") from None
    if abs(now - sent) > MAX_REQUEST_AGE_S:
        raise Unauthorized("the peer request is too old or dated in the future; check the servers' clocks")
    expected = _mac(
        key,
        method.upper(),
        path,
        headers[H_NODE],
        headers[H_CLUSTER],
        headers[H_TIME],
        headers[H_NONCE],
        hashlib.sha256(body).hexdigest(),
    )
    if not hmac.compare_digest(expected, headers[H_SIGNATURE]):
        raise Unauthorized("the peer request's signature is wrong (not signed with this cluster's key)")
    if not nonces.check_and_add(headers[H_NONCE], now):
        raise Unauthorized("the peer request was replayed")
    return PeerClaim(headers[H_NODE], headers[H_NONCE])


class FrameError(ThinsyncError):
    status = 400
    code = "bad_frame"


class FrameCodec:
    """Signs outgoing and checks incoming frames of one link connection."""

    def __init__(self, key: str, connection: str, outgoing: str) -> None:
        self._key = key
        self._connection = connection
        self._out = outgoing
        self._in = "s" if outgoing == "c" else "c"
        self._sent = 0
        self._received = 0

    def encode(self, message: Mapping[str, Any]) -> str:
        return self.encode_json(jsonfmt.dumpb(message))

    def encode_json(self, body: bytes) -> str:
        """A frame around a message already encoded as JSON (`chunks` encodes each message once)."""
        self._sent += 1
        mac = _mac(self._key, self._connection, self._out, str(self._sent), body)
        return f"{self._sent} {mac} {body.decode()}"

    def decode(self, frame: str | bytes) -> dict[str, Any]:
        return parse_message(self.open(frame))

    def open(self, frame: str | bytes) -> str:
        """The JSON body of a frame whose sequence number and signature are right (not parsed yet:
        a page of changes is parsed by the writer thread that applies it, see `CHANGES_PREFIX`)."""
        if isinstance(frame, bytes):
            frame = frame.decode("utf-8", "replace")
        if len(frame) > MAX_FRAME:
            raise FrameError("frame too large")
        try:
            seq_text, mac, body = frame.split(" ", 2)
            seq = int(seq_text)
        except ValueError:
            raise FrameError("malformed frame") from None
        if seq != self._received + 1:
            raise FrameError(f"frame {seq} out of order (expected {self._received + 1}): replayed or lost")
        expected = _mac(self._key, self._connection, self._in, seq_text, body)
        if not hmac.compare_digest(expected, mac):
            raise FrameError("frame signature is wrong")
        self._received = seq
        return body


# How a page of changes starts (`encode` writes the type first): the receiver routes it on this
# prefix and leaves the parsing to the thread that applies it.
CHANGES_PREFIX = '{"t":"changes",'


def parse_message(body: str) -> dict[str, Any]:
    try:
        message = jsonfmt.loads(body)
    except ValueError:
        raise FrameError("frame body is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise FrameError("frame has no message type")
    return message


def parse_sets(body: str) -> list[ChangeSet]:
    """The change sets of a `changes` message."""
    message = parse_message(body)
    sets = message.get("sets")
    if message["t"] != "changes" or not isinstance(sets, list):
        raise FrameError("a changes message must hold a list of sets")
    return [set_from_json(s) for s in sets]


def set_to_json(change: ChangeSet) -> dict[str, Any]:
    return {
        "origin": change.origin,
        "seq": change.seq,
        "hlc": change.hlc,
        "author": change.author,
        "summary": change.summary,
        # The items as the log holds them (a JSON text): neither side encodes them again.
        "items": change.items_json(),
    }


def set_from_json(data: Mapping[str, Any]) -> ChangeSet:
    try:
        raw = data["items"]
        if not isinstance(raw, str):
            raise TypeError("the items must be their JSON text")
        items = tuple(Item.from_json(i) for i in jsonfmt.loads(raw))
        return ChangeSet(
            0,
            str(data["origin"]),
            int(data["seq"]),
            int(data["hlc"]),
            str(data["author"]),
            str(data["summary"]),
            items,
            0.0,
            raw,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FrameError(f"malformed change set: {exc}") from None


def lag(mine: Mapping[str, int], theirs: Mapping[str, int]) -> int:
    """How many change sets this server holds that the other does not."""
    return sum(max(0, seq - theirs.get(origin, 0)) for origin, seq in mine.items())


def covers(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """True when vector `a` holds everything `b` holds."""
    return all(a.get(origin, 0) >= seq for origin, seq in b.items())


def chunks(message: Mapping[str, Any]) -> list[bytes]:
    """The message's JSON when small, else `chunk` messages carrying its JSON in pieces (all encoded)."""
    body = jsonfmt.dumpb(message)
    if len(body) <= CHUNK_BYTES:
        return [body]
    text = body.decode()
    parts = [text[i : i + CHUNK_BYTES] for i in range(0, len(text), CHUNK_BYTES)]
    return [jsonfmt.dumpb({"t": "chunk", "i": i, "n": len(parts), "data": part}) for i, part in enumerate(parts)]


class Assembler:
    """Puts chunked messages back together (in order; the frame codec already guarantees order)."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0

    def feed(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """The whole message once its last chunk arrived; None while parts are missing."""
        if message.get("t") != "chunk":
            return message
        if message.get("i") != len(self._parts) or not isinstance(message.get("data"), str):
            self._parts, self._size = [], 0
            raise FrameError("chunks out of order")
        self._parts.append(message["data"])
        self._size += len(message["data"])
        if self._size > MAX_MESSAGE:
            self._parts, self._size = [], 0
            raise FrameError("chunked message too large")
        if len(self._parts) < int(message.get("n", 0)):
            return None
        text = "".join(self._parts)
        self._parts, self._size = [], 0
        try:
            whole = jsonfmt.loads(text)
        except ValueError:
            raise FrameError("chunked message is not JSON") from None
        if not isinstance(whole, dict) or not isinstance(whole.get("t"), str) or whole["t"] == "chunk":
            raise FrameError("chunked message has no message type")
        return whole
