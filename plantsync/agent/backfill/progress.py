"""How far the backfill is: backlog, sent, drain rate over the last minute, ETA; a log line a
minute while it drains.

    split_backlog ──▶ start(total, expired) ──▶ sent(n) per batch of PUBACKs of backlog rows
                                                expired(n) per cutoff pass
                                                finished() when the backlog is handed out and
                                                every backlog row is acknowledged
    status() ──▶ the status page, /metrics, /api/v1/status (``plantsync status``)
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger("plantsync.agent.backfill")

RATE_WINDOW = 60.0
"""Seconds over which the drain rate is measured."""
LOG_EVERY = 60.0
"""Seconds between progress log lines while draining."""

State = Literal["idle", "draining", "done"]


@dataclass(frozen=True)
class BackfillStatus:
    """One look at the backfill, for people and for metrics."""

    state: State
    """idle: no backlog since start; draining; done: the last backlog is delivered."""
    total: int = 0
    """Backlog telemetry when the hub link last came up."""
    sent: int = 0
    """Of it, acknowledged by the hub."""
    expired: int = 0
    """Of it, dropped by ``[uplink].backfill_cutoff`` (counted as evicted too)."""
    rate: float = 0.0
    """Backlog messages acknowledged per second over the last minute."""
    rate_limit: int | None = None
    """``[uplink].backfill_rate``; None for "spare"."""
    started_at: float | None = None
    """Unix time the backlog was split off."""

    @property
    def remaining(self) -> int:
        return 0 if self.state != "draining" else max(0, self.total - self.sent - self.expired)

    @property
    def fraction_done(self) -> float:
        """0..1, for a progress bar."""
        if self.state != "draining" or self.total <= 0:
            return 1.0 if self.state == "done" else 0.0
        return min(1.0, (self.sent + self.expired) / self.total)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds until the backlog is delivered at the present rate; None if unknown."""
        if self.state != "draining" or self.rate <= 0:
            return None
        return self.remaining / self.rate


class BackfillProgress:
    """Counts the backfill of the current backlog; one per uplink."""

    def __init__(self, rate_limit: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate_limit = rate_limit
        self._clock = clock
        self._status = BackfillStatus("idle", rate_limit=rate_limit)
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._logged_at = 0.0

    def start(self, total: int, expired: int) -> None:
        """A new backlog of ``total`` rows, ``expired`` of them dropped at once."""
        if total <= 0 and self._status.state == "idle":
            return
        now = self._clock()
        self._samples = collections.deque([(now, 0)])
        self._logged_at = now
        state: State = "draining" if total > expired else "done"
        self._status = BackfillStatus(
            state, total, 0, expired, rate_limit=self._rate_limit, started_at=time.time()
        )
        if total:
            limit = "spare capacity" if self._rate_limit is None else f"{self._rate_limit} msg/s"
            log.info(
                "backlog of %d telemetry messages: live data first, the backlog beside it at %s%s",
                total,
                limit,
                f"; {expired} older than the cutoff dropped" if expired else "",
            )

    def sent(self, count: int) -> None:
        """``count`` backlog rows acknowledged by the hub."""
        if count and self._status.state == "draining":
            self._update(sent=self._status.sent + count)

    def expired(self, count: int) -> None:
        if count and self._status.state == "draining":
            self._update(expired=self._status.expired + count)

    def finished(self) -> None:
        """Every backlog row is handed out and acknowledged (or gone: evicted, expired)."""
        if self._status.state != "draining":
            return
        status = self._status
        self._status = BackfillStatus(
            "done", status.total, status.sent, status.expired, 0.0, status.rate_limit,
            status.started_at,
        )  # fmt: skip
        took = time.time() - (status.started_at or time.time())
        log.info(
            "backfill done: %d of %d backlog messages sent, %d dropped by the cutoff, in %.0f s",
            status.sent, status.total, status.expired, took,
        )  # fmt: skip

    def status(self) -> BackfillStatus:
        return self._status

    def _update(self, *, sent: int | None = None, expired: int | None = None) -> None:
        status = self._status
        sent = status.sent if sent is None else sent
        now = self._clock()
        samples = self._samples
        samples.append((now, sent))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()
        first_at, first_sent = samples[0]
        rate = (sent - first_sent) / (now - first_at) if now > first_at else status.rate
        self._status = BackfillStatus(
            "draining", status.total, sent, status.expired if expired is None else expired,
            rate, status.rate_limit, status.started_at,
        )  # fmt: skip

    def tick(self) -> None:
        """Log the progress once a minute while draining; cheap enough for every turn."""
        status = self._status
        now = self._clock()
        if status.state != "draining" or now - self._logged_at < LOG_EVERY:
            return
        self._logged_at = now
        eta = status.eta_seconds
        log.info(
            "backfill: %d of %d sent (%.0f%%), %d left, %.0f msg/s, ETA %s",
            status.sent, status.total, 100 * status.fraction_done, status.remaining,
            status.rate, "unknown" if eta is None else f"{eta:.0f} s",
        )  # fmt: skip
