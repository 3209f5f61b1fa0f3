"""Live status of terminals as this server sees their heartbeats (node-local, in memory)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Seen:
    last_seen: float
    booted_from: str | None = None
    address: str | None = None
    state: str | None = None
    uptime_s: float | None = None
    unassigned: bool = False
    online: bool = True
    # Seconds of silence before red, from the document known at the last heartbeat (None: look it up).
    offline_after: float | None = None

    def row(self, mac: str) -> tuple[Any, ...]:
        return (mac, self.last_seen, self.booted_from, self.address, self.state, self.uptime_s, int(self.unassigned))


class RateLimit:
    """At most `per_second` requests from one address, in a token bucket that allows short bursts."""

    def __init__(self, per_second: float, burst: float) -> None:
        self._rate = per_second
        self._burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, now: float) -> bool:
        tokens, at = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > 100_000:
            self._buckets.clear()
        return True
