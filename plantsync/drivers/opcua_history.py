"""History backfill: the values a gap missed, read from the server's history (HistoryRead).

    for each (machine, tag): since = its last value received live (the agent remembers it),
                             until = its first value of the new connection
    tags without AccessLevel HistoryRead ─────────────────────────────▶ HistoryGap "no-history"
    the rest, in batches of the server's MaxNodesPerHistoryReadData / history continuation
    points ─▶ HistoryReadRaw(since, until, Source timestamps, NumValuesPerNode)
           ─▶ while continuation points: HistoryRead again with them ─▶ released at the end
           ─▶ values strictly between since and until ─▶ historical Readings
    a node the server refuses (a Bad status) ─────────────────────────▶ HistoryGap "<status>"

Strictly between: the value at ``since`` was delivered live and the one at ``until`` is the
first of this connection, so each value of the gap is sent exactly once. A rate limit (values
per second) keeps the plant server's load bounded: after each response the reader waits
until its values are within the rate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from asyncua import ua
from asyncua.client.ua_session import UaSession

from plantsync.drivers.base import HistoryGap, Reading
from plantsync.drivers.common.uaserver import ServerLimits
from plantsync.drivers.opcua_values import as_utc, reading

_logger = logging.getLogger(__name__)

VALUES_PER_NODE = 1000
"""Values asked per node and request; the server hands back a continuation point for more."""


@dataclass(frozen=True, slots=True)
class Wanted:
    """One tag's gap: read (since, until) of ``node_id``."""

    machine_id: str
    tag: str
    node_id: ua.NodeId
    since: datetime
    until: datetime


class HistoryReader:
    """Reads the gaps of one connection, within the server's limits and a rate."""

    def __init__(self, session: UaSession, limits: ServerLimits, *, rate: float) -> None:
        self._session, self._limits, self._rate = session, limits, rate
        self._started = time.monotonic()
        self.values = 0
        """Values read so far (for the rate and the bench)."""

    async def read(self, wanted: Sequence[Wanted]) -> AsyncIterator[list[Reading] | HistoryGap]:
        """Historical readings in batches, and a HistoryGap per tag the server refuses."""
        size = self._limits.history_batch()
        for start in range(0, len(wanted), size):
            async for item in self._batch(list(wanted[start : start + size])):
                yield item

    async def _batch(self, batch: list[Wanted]) -> AsyncIterator[list[Reading] | HistoryGap]:
        since = min(item.since for item in batch)
        until = max(item.until for item in batch)
        points: dict[int, bytes] = {}
        pending = list(range(len(batch)))
        while pending:
            results = await self._history_read(batch, pending, points, since, until)
            still = []
            found: list[Reading] = []
            for index, result in zip(pending, results, strict=True):
                item = batch[index]
                if not result.StatusCode.is_good():
                    points.pop(index, None)
                    yield HistoryGap(
                        item.machine_id, item.tag, item.since, item.until, result.StatusCode.name
                    )
                    continue
                found.extend(_inside(item, result.HistoryData))
                if result.ContinuationPoint:
                    points[index] = result.ContinuationPoint
                    still.append(index)
                else:
                    points.pop(index, None)
            pending = still
            if found:
                yield found
            await self._pace(len(found))

    async def _history_read(
        self,
        batch: list[Wanted],
        pending: list[int],
        points: dict[int, bytes],
        since: datetime,
        until: datetime,
    ) -> list[ua.HistoryReadResult]:
        details = ua.ReadRawModifiedDetails(
            IsReadModified=False,
            StartTime=since,
            EndTime=until,
            NumValuesPerNode=VALUES_PER_NODE,
            ReturnBounds=False,
        )
        params = ua.HistoryReadParameters(
            HistoryReadDetails=details,
            TimestampsToReturn=ua.TimestampsToReturn.Source,
            ReleaseContinuationPoints=False,
            NodesToRead=[
                ua.HistoryReadValueId(
                    NodeId=batch[index].node_id, ContinuationPoint=points.get(index)
                )
                for index in pending
            ],
        )
        return await self._session.history_read(params)

    async def _pace(self, values: int) -> None:
        """Wait until the values read so far are within ``rate`` per second."""
        self.values += values
        ahead = self.values / self._rate - (time.monotonic() - self._started)
        if ahead > 0:
            await asyncio.sleep(ahead)


def _inside(item: Wanted, data: object) -> list[Reading]:
    """The history values strictly between ``since`` and ``until``, oldest first."""
    values = getattr(data, "DataValues", None) or []
    found = []
    for value in values:
        moment = value.SourceTimestamp
        if moment is None or not item.since < as_utc(moment) < item.until:
            continue
        live = reading(item.machine_id, item.tag, value)
        found.append(
            Reading(
                live.machine_id,
                live.tag,
                live.value,
                live.quality,
                live.status_code,
                live.source_time,
                historical=True,
            )
        )
    found.sort(key=lambda r: r.source_time or item.since)
    return found


@dataclass(frozen=True, slots=True)
class Tag:
    """What the reader needs of one monitored tag of this connection."""

    machine_id: str
    tag: str
    node_id: ua.NodeId
    first_live: datetime | None
    """The source time of its first value on this connection; None before it arrived."""
    history: bool


async def backfill(
    reader: HistoryReader, tags: Sequence[Tag], since: Mapping[tuple[str, str], datetime]
) -> AsyncIterator[list[Reading] | HistoryGap]:
    """Every tag's gap: read from history where the server keeps it, else a HistoryGap."""
    wanted = []
    now = datetime.now(UTC)
    for tag in tags:
        start = since.get((tag.machine_id, tag.tag))
        end = tag.first_live or now
        if start is None or end <= start:
            continue  # never seen live, or unchanged since: nothing was missed
        if not tag.history:
            yield HistoryGap(tag.machine_id, tag.tag, start, end, "no-history")
            continue
        wanted.append(Wanted(tag.machine_id, tag.tag, tag.node_id, start, end))
    async for item in reader.read(wanted):
        yield item
