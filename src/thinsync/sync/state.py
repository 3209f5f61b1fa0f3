"""What this server knows about each peer, and the states the status page shows."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from thinsync.sync.protocol import lag

CONNECTING_GRACE_S = 3.0


@dataclass
class PeerState:
    """One other server of the list, as seen from here. Mutated only on the event loop."""

    name: str
    address: str
    port: int
    role: str
    node_id: str | None = None
    origin: str | None = None  # the origin the peer writes under now (from its hello); it holds all of it
    connected: bool = False
    inbound: bool = False  # the peer's own link to us is up
    theirs: dict[str, int] = field(default_factory=dict)  # the peer's vector (hello, acks, pushes)
    acked_at: float = 0.0
    last_sync: float | None = None
    down_since: float | None = None
    started: float = field(default_factory=time.time)
    degraded: str | None = None
    repairing: bool = False
    last_error: str | None = None
    last_error_at: float | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    clock_offset_ms: float | None = None
    rtt_ms: float | None = None
    digest: str | None = None
    digest_match: bool | None = None
    digest_checked: float | None = None
    digest_vector: dict[str, int] | None = None  # this server's vector when digests were last compared
    oldest_unacked: float | None = None
    repairs: int = 0

    def learn(self, vector: dict[str, int]) -> None:
        """The peer holds at least `vector` (merged, never lowered)."""
        for origin, seq in vector.items():
            if seq > self.theirs.get(origin, 0):
                self.theirs[origin] = seq

    def lacks(self, origin: str, seq: int) -> bool:
        """Whether the peer may lack change `seq` of `origin` (never one of its own current origin)."""
        return origin != self.origin and seq > self.theirs.get(origin, 0)

    def error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = time.time()

    def state(self, mine: dict[str, int], now: float) -> tuple[str, str]:
        """(state, detail) for the status page."""
        queued = lag(mine, self.theirs)
        if self.degraded:
            return "degraded", self.degraded
        if not self.connected:
            if self.down_since is None and now - self.started < CONNECTING_GRACE_S:
                return "connecting", ""
            since = self.down_since or self.started
            return "peer-unreachable", f"since {_iso(since)}, queued {queued}"
        behind = lag(self.theirs, mine)
        if queued or behind:
            return "catching-up", f"{queued + behind} left"
        if self.repairing or self.digest_match is False:
            return "diverged", "repairing"
        if self.digest_match is None:
            return "catching-up", "comparing digests"
        return "in-sync", ""

    def to_status(self, mine: dict[str, int], now: float) -> dict[str, Any]:
        state, detail = self.state(mine, now)
        queued = lag(mine, self.theirs)
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "role": self.role,
            "node_id": self.node_id,
            "state": state,
            "detail": detail,
            "connected": self.connected,
            "inbound_connected": self.inbound,
            "lag_changes": queued,
            "behind_changes": lag(self.theirs, mine),
            "lag_seconds": round(max(0.0, now - self.oldest_unacked), 3) if queued and self.oldest_unacked else 0.0,
            "last_sync": _iso(self.last_sync) if self.last_sync else None,
            "digest": self.digest,
            "digest_match": self.digest_match,
            "last_digest_check": _iso(self.digest_checked) if self.digest_checked else None,
            "versions": self.versions,
            "clock_offset_ms": None if self.clock_offset_ms is None else round(self.clock_offset_ms, 1),
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 2),
            "repairs": self.repairs,
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at) if self.last_error_at else None,
        }


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
