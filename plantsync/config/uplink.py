"""The ``[uplink]`` section: how the backlog of an outage goes out beside live data.

After the hub link comes back, new messages go out at once (business first, then live
telemetry); the telemetry that waited in the outbox goes out beside them as backfill, marked
``historical``, at ``backfill_rate``, in ``backfill_order``, and telemetry older than
``backfill_cutoff`` is dropped and counted as evicted (a gap HQ's consumers see). Business
messages are never cut off or throttled.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Literal

from pydantic import Field, PositiveInt

from plantsync.config.types import Duration, Section


class BackfillOrder(StrEnum):
    """Which end of the backlog goes first."""

    OLDEST_FIRST = "oldest-first"
    NEWEST_FIRST = "newest-first"


class UplinkConfig(Section):
    """Replay after an outage: live first, the backlog beside it."""

    backfill_rate: PositiveInt | Literal["spare"] = Field(
        default="spare",
        description="backlog messages per second, or 'spare': whatever the hub's window has"
        " room for once business and live messages are sent",
    )
    backfill_order: BackfillOrder = Field(
        default=BackfillOrder.OLDEST_FIRST,
        description="'oldest-first' or 'newest-first' (the latest state first, history after)",
    )
    hub_rate: PositiveInt | None = Field(
        default=None,
        description="messages per second toward the hub, every lane together (business, live"
        " and backfill); business goes first within it, then live, then backfill. Unset: no"
        " limit",
    )
    backfill_cutoff: Duration | None = Field(
        default=None,
        description="telemetry in the backlog older than this is dropped and counted as"
        " evicted; business messages are never cut off. Unset: everything is sent",
    )

    @property
    def cutoff_seconds(self) -> float | None:
        """The cutoff in seconds, None when unset (or zero: nothing would be kept)."""
        cutoff = self.backfill_cutoff
        return cutoff.total_seconds() if cutoff is not None and cutoff > timedelta(0) else None
