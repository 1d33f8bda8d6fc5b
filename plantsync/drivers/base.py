"""The small roles a driver plays; the agent wraps each in a running object that owns
reconnection, counters, health and logging, so drivers stay small.

    Source   async context manager; ``readings()`` yields batches of Reading until the link
             drops, when it raises SourceUnavailable (the supervisor reconnects)

Drivers contain no reconnect loops and never import ``plantsync.agent``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from plantsync.contracts.machine import Quality, TagScalar


@dataclass(frozen=True, slots=True)
class Reading:
    """One tag value as a source reported it."""

    machine_id: str
    tag: str
    value: TagScalar
    quality: Quality
    status_code: int
    source_time: datetime | None


class Source(Protocol):
    """A plant-side link that produces readings (OPC UA, MES polling)."""

    @property
    def name(self) -> str:
        """The link's name as configured; used in health, logs and the ``source`` field."""
        ...

    async def __aenter__(self) -> Self:
        """Connect and subscribe; raise SourceUnavailable or LinkMisconfigured."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Disconnect, within a bounded time, whatever state the link is in."""
        ...

    def readings(self) -> AsyncIterator[list[Reading]]:
        """Batches of readings as notifications arrive; the first batch is the initial values.

        Raises SourceUnavailable when the link drops or goes silent for longer than its
        stall timeout.
        """
        ...
