"""Hybrid logical clock: 48-bit wall milliseconds + 16-bit counter in one 64-bit integer.

Stamps are strings `<16 hex digits of HLC>.<origin>`, so comparing two stamps as strings
compares (HLC, origin): one total order, the same on every server.
"""

from __future__ import annotations

import threading
import time

from thinsync.clock import Clock

COUNTER_BITS = 16
MAX_HLC = (1 << 64) - 1


def hlc_from_ms(ms: int) -> int:
    return ms << COUNTER_BITS


def hlc_ms(hlc: int) -> int:
    """The wall-clock milliseconds part of an HLC value."""
    return hlc >> COUNTER_BITS


def make_stamp(hlc: int, origin: str) -> str:
    return f"{hlc:016x}.{origin}"


def stamp_hlc(stamp: str) -> int:
    return int(stamp[:16], 16)


def stamp_origin(stamp: str) -> str:
    return stamp[17:]


class HLC:
    """Thread-safe; never returns the same or a lower value twice, whatever the wall clock does."""

    def __init__(self, clock: Clock, last: int = 0) -> None:
        self._clock = clock
        self._last = last
        self._lock = threading.Lock()

    @property
    def last(self) -> int:
        return self._last

    def wall(self) -> int:
        """The wall clock as an HLC value with a zero counter."""
        return hlc_from_ms(int(self._clock.time() * 1000))

    def now(self, floor: int = 0) -> int:
        """A fresh value above every value seen so far, above `floor`, and at least the wall clock."""
        with self._lock:
            candidate = max(self.wall(), self._last + 1, floor)
            if candidate > MAX_HLC:
                raise OverflowError("hybrid logical clock exhausted")
            self._last = candidate
            return candidate

    def observe(self, remote: int) -> None:
        """Advance past a value received from elsewhere, so later local values order after it."""
        with self._lock:
            if remote > self._last:
                self._last = remote


def wall_iso(hlc: int) -> str:
    """The wall time of an HLC value as ISO 8601 UTC with milliseconds."""
    ms = hlc_ms(hlc)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"
