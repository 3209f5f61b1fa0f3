"""Synchronization lag over the last hour: a ring buffer of samples and an inline SVG chart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from markupsafe import Markup, escape

if TYPE_CHECKING:
    from thinsync.http.context import Services

log = logging.getLogger(__name__)
SAMPLE_S = 5.0
WINDOW_S = 3600.0
COLOURS = ("#1f6feb", "#8250df", "#bf8700", "#0a7ea4")


@dataclass(frozen=True)
class Sample:
    at: float
    peer: str
    lag_s: float
    lag_changes: int
    connected: bool


class LagHistory:
    """The last hour of per-peer lag samples (one every SAMPLE_S), kept in memory only."""

    def __init__(self, window_s: float = WINDOW_S, every_s: float = SAMPLE_S) -> None:
        self.every_s = every_s
        self.window_s = window_s
        self.samples: deque[Sample] = deque(maxlen=int(window_s / every_s + 1) * 4)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    async def run(self, svc: Services) -> None:
        while not svc.shutdown.is_set():
            try:
                mine = await asyncio.to_thread(svc.store.vector)
                now = time.time()
                for peer in list(svc.sync.peers.values()):
                    status = peer.to_status(mine, now)
                    self.add(
                        Sample(
                            now,
                            peer.name,
                            float(status["lag_seconds"] or 0),
                            int(status["lag_changes"] or 0),
                            bool(status["connected"]),
                        )
                    )
            except Exception:
                log.exception("sampling synchronization lag failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(svc.shutdown.wait(), self.every_s)

    def svg(self, now: float | None = None, width: int = 560, height: int = 130) -> Markup:
        """The chart: one line per peer (lag in seconds), red ticks where the link was down."""
        now = now or time.time()
        start = now - self.window_s
        rows = [s for s in self.samples if s.at >= start]
        peers = sorted({s.peer for s in rows})
        top = max([1.0, *(s.lag_s for s in rows)])
        left, bottom, plot_w, plot_h = 40, height - 22, width - 50, height - 34

        def x(at: float) -> float:
            return left + (at - start) / self.window_s * plot_w

        def y(value: float) -> float:
            return bottom - value / top * plot_h

        parts = [
            f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'aria-labelledby="lag-title" xmlns="http://www.w3.org/2000/svg">',
            '<title id="lag-title">Synchronization lag in seconds over the last hour</title>',
            f'<line x1="{left}" y1="{bottom}" x2="{left + plot_w}" y2="{bottom}" class="axis"/>',
            f'<line x1="{left}" y1="{bottom - plot_h}" x2="{left}" y2="{bottom}" class="axis"/>',
            f'<text x="{left - 4}" y="{bottom - plot_h + 4}" text-anchor="end" class="tick">{top:g}s</text>',
            f'<text x="{left - 4}" y="{bottom + 4}" text-anchor="end" class="tick">0</text>',
            f'<text x="{left}" y="{height - 4}" class="tick">-60 min</text>',
            f'<text x="{left + plot_w}" y="{height - 4}" text-anchor="end" class="tick">now</text>',
        ]
        if not rows:
            parts.append(
                f'<text x="{left + plot_w / 2}" y="{bottom - plot_h / 2}" text-anchor="middle" class="tick">'
                "no samples yet</text>"
            )
        for i, peer in enumerate(peers):
            colour = COLOURS[i % len(COLOURS)]
            mine = [s for s in rows if s.peer == peer]
            points = " ".join(f"{x(s.at):.1f},{y(s.lag_s):.1f}" for s in mine)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
            for s in mine:
                if not s.connected:
                    parts.append(f'<rect x="{x(s.at) - 1:.1f}" y="{bottom - 6}" width="3" height="6" class="down"/>')
            parts.append(f'<text x="{left + 8 + 110 * i}" y="14" fill="{colour}" class="legend">{escape(peer)}</text>')
        parts.append("</svg>")
        return Markup("".join(parts))
