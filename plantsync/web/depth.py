"""The outbox depth over the last hour, for the status page's chart: presentation state that
the web surface owns and samples itself, so the agent core knows nothing of it.

    create_app ──▶ DepthHistory ◀── record() every 10 s ── run(view): view.store.outbox.stats()
                        │                                   in sampling(), the app's lifespan,
                        ▼                                   which ApiServer runs while it serves
          status page: samples + the current depth ──▶ depth_chart (statusrender.py)
"""

from __future__ import annotations

import asyncio
import contextlib
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
