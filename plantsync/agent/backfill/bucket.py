"""A token bucket on the monotonic clock: ``rate`` tokens a second, at most ``burst`` saved."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Paces a lane: ``available()`` tokens may be spent now, ``take(n)`` spends them.

    Over any window of ``t`` seconds at most ``burst + rate * t`` tokens are spent. It starts
    full. The clock is monotonic, so a wall-clock step neither floods nor stops the lane.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def available(self) -> int:
        """Whole tokens that may be spent now."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return int(self._tokens)

    def take(self, count: int) -> None:
        """Spend ``count`` tokens (no more than ``available()`` said)."""
        self._tokens -= count

    def wait(self, count: float) -> float:
        """Seconds until ``count`` tokens (at most ``burst``) are available; 0 when they are."""
        missing = min(count, self.burst) - self._tokens
        return max(0.0, missing / self.rate)
