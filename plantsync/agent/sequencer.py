"""Per-stream sequence numbers for every message the agent writes up, from one place.

Several producers write to the outbox (the pipeline's ``machine/<id>`` streams; the downlink's
and the plant reporter's ``acks``, ``order/<id>`` and ``resync`` streams), so numbers are
assigned under one lock and adopted only once the transaction that carries them has committed:
a failed commit leaves no gap. The agent builds one Sequencer from the outbox's
``last_sequences()`` at start and hands it to every producer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable


class Sequencer:
    """Hands out the next per-stream number inside ``assigning()``, one producer at a time."""

    def __init__(self, last: dict[str, int]) -> None:
        self._last = dict(last)
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def assigning(self) -> AsyncIterator[Callable[[str], int]]:
        """Yield ``next_seq(stream)``; the numbers count only if the block ends without error.

        Commit the records that carry the numbers inside the block.
        """
        async with self._lock:
            taken: dict[str, int] = {}

            def next_seq(stream: str) -> int:
                taken[stream] = taken.get(stream, self._last.get(stream, 0)) + 1
                return taken[stream]

            yield next_seq
            self._last.update(taken)
