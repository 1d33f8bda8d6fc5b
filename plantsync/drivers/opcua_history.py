"""History backfill: the values a gap missed, read from the server's history (HistoryRead).

    for each gap (machine, tag, since, until), kept by the agent (``agent/backfill/gaps.py``):
    since = its last value sent (received live, or read here), until = the first value after
    tags without AccessLevel HistoryRead ─────────────────────────────▶ HistoryGap "no-history"
    the rest, in batches of the server's MaxNodesPerHistoryReadData / history continuation
    points ─▶ HistoryReadRaw(since, until, Source timestamps, NumValuesPerNode)
           ─▶ while continuation points: HistoryRead again with them (a server that stops
              at NumValuesPerNode without one: again from the last value received)
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
from datetime import datetime

from asyncua import ua
from asyncua.client.ua_session import UaSession

from plantsync.drivers.base import HistoryGap, Reading
from plantsync.drivers.common.uaserver import ServerLimits
from plantsync.drivers.opcua_values import as_utc, reading

_logger = logging.getLogger(__name__)

VALUES_PER_NODE = 1000
"""Values asked per node and request; the server hands back a continuation point for more."""

VALUES_PER_REQUEST = 10_000
"""Values one response may carry at most (nodes per request x VALUES_PER_NODE). A server
answers one request at a time per session: a response that takes longer than the link's
request_timeout to build (asyncua: ~50,000 values) holds back the watchdog's read and the
link is dropped as dead, so each stays small (~1 s to build on asyncua's SQLite history)."""


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
        size = max(1, min(self._limits.history_batch(), VALUES_PER_REQUEST // VALUES_PER_NODE))
        for start in range(0, len(wanted), size):
            async for item in self._batch(list(wanted[start : start + size])):
                yield item

    async def _batch(self, batch: list[Wanted]) -> AsyncIterator[list[Reading] | HistoryGap]:
        """Every node of ``batch`` to its end: continuation points where the server gives
        them; where it stops at NumValuesPerNode without one (asyncua's SQLite storage does),
        the next page starts after the last value received."""
        after = {index: item.since for index, item in enumerate(batch)}
        points: dict[int, bytes] = {}
        pending = set(after)
        while pending:
            for group in _groups(pending, points, after):
                results = await self._history_read(batch, group, points, after)
                found: list[Reading] = []
                for index, result in zip(group, results, strict=True):
                    item = batch[index]
                    if not result.StatusCode.is_good():
                        pending.discard(index)
                        points.pop(index, None)
                        name = result.StatusCode.name
                        yield HistoryGap(item.machine_id, item.tag, after[index], item.until, name)
                        continue
                    values = getattr(result.HistoryData, "DataValues", None) or []
                    found.extend(_inside(item, after[index], values))
                    if not self._more(index, result, values, points, after):
                        pending.discard(index)
                if found:
                    yield found
                await self._pace(len(found))

    @staticmethod
    def _more(
        index: int,
        result: ua.HistoryReadResult,
        values: list[ua.DataValue],
        points: dict[int, bytes],
        after: dict[int, datetime],
    ) -> bool:
        """Whether the node has more to read, and from where."""
        if result.ContinuationPoint:
            points[index] = result.ContinuationPoint
            return True
        points.pop(index, None)
        last = values[-1].SourceTimestamp if values else None
        if len(values) < VALUES_PER_NODE or last is None or as_utc(last) <= after[index]:
            return False
        after[index] = as_utc(last)
        return True

    async def _history_read(
        self,
        batch: list[Wanted],
        group: list[int],
        points: dict[int, bytes],
        after: dict[int, datetime],
    ) -> list[ua.HistoryReadResult]:
        details = ua.ReadRawModifiedDetails(
            IsReadModified=False,
            StartTime=min(after[index] for index in group),
            EndTime=max(batch[index].until for index in group),
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
                for index in group
            ],
        )
        return await self._session.history_read(params)

    async def _pace(self, values: int) -> None:
        """Wait until the values read so far are within ``rate`` per second."""
        self.values += values
        ahead = self.values / self._rate - (time.monotonic() - self._started)
        if ahead > 0:
            await asyncio.sleep(ahead)


def _groups(
    pending: set[int], points: dict[int, bytes], after: dict[int, datetime]
) -> list[list[int]]:
    """One request for the nodes with continuation points, one per distinct start for the
    others (a request has one StartTime)."""
    continuing = sorted(index for index in pending if index in points)
    starts: dict[datetime, list[int]] = {}
    for index in sorted(pending - set(continuing)):
        starts.setdefault(after[index], []).append(index)
    return ([continuing] if continuing else []) + list(starts.values())


def _inside(item: Wanted, after: datetime, values: list[ua.DataValue]) -> list[Reading]:
    """The history values strictly between ``after`` and ``until``, oldest first."""
    found = []
    for value in values:
        moment = value.SourceTimestamp
        if moment is None or not after < as_utc(moment) < item.until:
            continue
        found.append(reading(item.machine_id, item.tag, value, historical=True))
    found.sort(key=lambda r: r.source_time or item.since)
    return found


@dataclass(frozen=True, slots=True)
class Tag:
    """What the reader needs of one monitored tag of this connection."""

    node_id: ua.NodeId
    history: bool
    """The server keeps its history (AccessLevel HistoryRead)."""


async def backfill(
    reader: HistoryReader, tags: Mapping[tuple[str, str], Tag], gaps: Sequence[HistoryGap]
) -> AsyncIterator[list[Reading] | HistoryGap]:
    """Every gap read from history where the server keeps the tag's, else a HistoryGap."""
    wanted = []
    for gap in gaps:
        tag = tags.get((gap.machine_id, gap.tag))
        if gap.end <= gap.start:
            continue
        if tag is None or not tag.history:
            reason = "no-history" if tag is not None else "not-configured"
            yield HistoryGap(gap.machine_id, gap.tag, gap.start, gap.end, reason)
            continue
        wanted.append(Wanted(gap.machine_id, gap.tag, tag.node_id, gap.start, gap.end))
    async for item in reader.read(wanted):
        yield item
