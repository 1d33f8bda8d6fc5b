"""The outbox depth over the last hour, for the status page's chart: presentation state that
the web surface owns and samples itself, so the agent core knows nothing of it.

    create_app ──▶ DepthHistory ◀── record() every 10 s ── run(view): view.store.outbox.stats()
                        │                                   in sampling(), the app's lifespan,
                        ▼                                   which ApiServer runs while it serves
          status page: samples + the current depth ──▶ depth_chart (here, as SVG)
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from plantsync.errors import StoreError
from plantsync.web.view import AgentView

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 10.0
HISTORY_POINTS = 360
"""An hour of outbox depth, one point every 10 s."""


@dataclass(frozen=True, slots=True)
class DepthSample:
    at: float
    lanes: dict[str, int]


class DepthHistory:
    """The outbox depth per lane over the last hour: a bounded ring, sampled every 10 s.

    Samples are placed on the monotonic clock: the chart only needs their distance from now,
    and a wall-clock step must neither wipe the hour off the chart nor fold it back on itself.
    """

    def __init__(self, points: int = HISTORY_POINTS) -> None:
        self.samples: deque[DepthSample] = deque(maxlen=points)

    def record(self, lanes: dict[str, int], at: float | None = None) -> None:
        self.samples.append(DepthSample(time.monotonic() if at is None else at, dict(lanes)))

    async def run(self, view: AgentView, interval: float = SAMPLE_SECONDS) -> None:
        """Sample the outbox of ``view``'s store until cancelled; a failed read, or no store
        open yet, skips one point."""
        while True:
            await self._sample(view)
            await asyncio.sleep(interval)

    async def _sample(self, view: AgentView) -> None:
        store = view.store
        if store is None:
            return
        try:
            stats = await store.outbox.stats()
        except StoreError as exc:  # a chart must never stop the agent
            log.debug("outbox depth not sampled: %s", exc)
        else:
            self.record({lane.name.lower(): s.depth for lane, s in stats.lanes.items()})


def sampling(
    view: AgentView, history: DepthHistory
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """An app lifespan that runs ``history.run(view)`` while the app serves."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        sampler = asyncio.create_task(history.run(view), name="depth-history")
        try:
            yield
        finally:
            sampler.cancel()
            await asyncio.wait([sampler])  # ends with it; our own cancellation propagates
            if not sampler.cancelled() and sampler.exception() is not None:
                log.error("the outbox depth sampler failed", exc_info=sampler.exception())

    return lifespan


_LANE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def depth_chart(samples: list[DepthSample], now: float, width: int = 480, height: int = 140) -> str:
    """The outbox depth per lane over the last hour, as inline SVG (no script, no library)."""
    start = now - HISTORY_POINTS * SAMPLE_SECONDS
    points = [s for s in samples if s.at >= start]
    lanes = sorted({lane for s in points for lane in s.lanes})
    top = max([1, *(depth for s in points for depth in s.lanes.values())])
    pad = 24

    def x(at: float) -> float:
        return pad + (at - start) / (now - start) * (width - pad - 4)

    def y(depth: int) -> float:
        return height - pad - depth / top * (height - pad - 8)

    lines = []
    legend = []
    for index, lane in enumerate(lanes):
        color = _LANE_COLORS[index % len(_LANE_COLORS)]
        coords = " ".join(f"{x(s.at):.1f},{y(s.lanes.get(lane, 0)):.1f}" for s in points)
        lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        legend.append(
            f'<text x="{pad + 8 + index * 90}" y="16" fill="{color}"'
            f' font-size="11">{html.escape(lane)}</text>'
        )
    return (
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}"'
        f' height="{height}" aria-label="outbox depth, last hour">'
        "<title>Outbox depth per lane, last hour</title>"
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - 4}" y2="{height - pad}"'
        ' stroke="#999"/>'
        f'<line x1="{pad}" y1="8" x2="{pad}" y2="{height - pad}" stroke="#999"/>'
        f'<text x="2" y="12" font-size="10" fill="#555">{top}</text>'
        f'<text x="2" y="{height - pad}" font-size="10" fill="#555">0</text>'
        f'<text x="{width - 60}" y="{height - pad + 12}" font-size="10" fill="#555">now</text>'
        f'<text x="{pad}" y="{height - pad + 12}" font-size="10" fill="#555">-60 min</text>'
        f"{''.join(lines)}{''.join(legend)}</svg>"
    )
