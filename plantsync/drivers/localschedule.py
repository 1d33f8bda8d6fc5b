"""The plant system of last resort: the agent's own last-known-good schedule.

Used when no MES or Job Control server is configured: a change counts as applied once it is in
the schedule the agent serves locally to plant applications (recorded by the downlink in the
same transaction as the acknowledgement), so nothing is sent anywhere.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from plantsync.drivers.base import OrderChange, PlantVerdict


class LocalScheduleSink:
    """Accepts every change; the downlink records it in the last-known-good schedule."""

    @property
    def name(self) -> str:
        return "schedule"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    async def apply(self, change: OrderChange) -> PlantVerdict:
        return PlantVerdict(applied=True)
