"""The outbox contract, after Telegraf's buffer transactions.

    add(records) -> dropped      commit records durably; telemetry shed to stay under the cap
    begin(limit) -> batch        claim up to ``limit`` ready rows, business lane first
    split_backlog(order)         the telemetry committed so far becomes the backlog: ``begin``
                                 serves it last (after business and live telemetry), marked
                                 historical, at most ``backfill`` rows a call, in ``order``
    expire_backlog(before)       drop backlog telemetry created before then, counted as evicted
    ack(row_ids)                 the broker took them (PUBACK): delete
    nack(row_ids)                not delivered (link dropped): ready again, same order
                                 anything neither acked nor nacked stays claimed until the
                                 store is reopened, when it returns to ready

Two lanes: BUSINESS rows (schedule acks, order status, confirmations) are never evicted; when
only they are left at the cap, ``add`` refuses them with StoreFull (back-pressure). TELEMETRY
rows are evicted oldest first, and every eviction is counted.

Two back-ends keep this contract: ``SqliteOutbox`` (durable) and ``MemoryOutbox`` (tests, and a
reference the durable one is checked against). One contract test suite runs over both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from plantsync.config.uplink import BackfillOrder

ROW_OVERHEAD_BYTES = 64
"""Counted per row on top of topic and payload, so many tiny rows still reach the cap."""


class Lane(IntEnum):
    """Which queue a row waits in; lower drains first."""

    BUSINESS = 0
    TELEMETRY = 1


class RowStatus(IntEnum):
    READY = 0
    INFLIGHT = 1


@dataclass(frozen=True, slots=True)
class Record:
    """One serialized message on its way to the hub."""

    message_id: str
    lane: Lane
    stream: str
    seq: int
    topic: str
    payload: bytes
    created_at: float
    """Unix time the record was made, for the age of the oldest message."""

    @property
    def size(self) -> int:
        """What this row counts against the store's size cap."""
        return len(self.payload) + len(self.topic) + ROW_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class Claimed:
    """A row handed to the uplink by ``begin``; ack or nack it by ``row_id``."""

    row_id: int
    record: Record
    historical: bool = False
    """From the backlog (``split_backlog``): to be sent marked ``historical``."""


@dataclass
class BacklogCursor:
    """Where a back-end is in its backlog (``split_backlog``): the rows ``end`` and below."""

    end: int = 0
    order: BackfillOrder = BackfillOrder.OLDEST_FIRST
    cursor: int = 0
    """Oldest-first: the highest id handed out; newest-first: the lowest."""
    pending: bool = False
    """Rows may be left: the last backlog claim filled what it asked for."""

    def unclaimed(self) -> list[tuple[int, int]]:
        """The id range ``(after, up to]`` of backlog rows not handed out yet, if any."""
        if not self.pending:
            return []
        if self.order == BackfillOrder.OLDEST_FIRST:
            return [(self.cursor, self.end)]
        return [(0, self.cursor - 1)]


@dataclass(frozen=True, slots=True)
class LaneStats:
    depth: int = 0
    oldest_created_at: float | None = None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """What the status page and metrics show about the outbox."""

    lanes: dict[Lane, LaneStats] = field(default_factory=dict)
    size_bytes: int = 0
    max_size_bytes: int = 0
    evicted_total: int = 0
    dead_letter_bytes: int = 0
    """Of ``size_bytes``, what dead letters hold (they count toward the cap too)."""
    key_bytes: int = 0
    """Of ``size_bytes``, what idempotency keys hold (``buffer/idempotency``)."""
    dead_letter_cap: int = 0
    """The most dead letters may hold; beyond, the oldest are evicted (``room/held.py``)."""
    dead_letters_evicted: int = 0
    """Dead letters evicted for room since the store was created."""

    @property
    def depth(self) -> int:
        return sum(lane.depth for lane in self.lanes.values())


class Outbox(Protocol):
    """The durable queue between the pipeline and the uplink."""

    async def add(self, records: Sequence[Record]) -> int:
        """Commit ``records`` in one transaction; return how many telemetry rows were dropped.

        Dropped rows are older telemetry evicted to make room, or incoming telemetry that did
        not fit. Raises ``StoreFull`` (and commits nothing) when the business rows of the batch
        do not fit even after every telemetry row is gone.
        """
        ...

    async def begin(self, limit: int, *, backfill: int | None = None) -> list[Claimed]:
        """Claim up to ``limit`` ready rows: business lane first, each lane in insertion order;
        after ``split_backlog``, the backlog last, at most ``backfill`` rows (None: no bound)."""
        ...

    async def split_backlog(self, order: BackfillOrder) -> int:
        """Make every telemetry row committed so far the backlog; return how many there are.

        From then on ``begin`` serves business rows, then telemetry committed later (live),
        then the backlog in ``order`` (claimed ``historical``). Call it when the hub link
        comes up, with no telemetry claimed; a later call starts a new backlog.
        """
        ...

    async def expire_backlog(self, created_before: float) -> int:
        """Delete unclaimed backlog telemetry created before that Unix time; counted as
        evicted. Returns how many rows went."""
        ...

    async def ack(self, row_ids: Sequence[int]) -> None:
        """Delete rows the hub acknowledged. Unknown ids are ignored (a repeated ack is fine)."""
        ...

    async def nack(self, row_ids: Sequence[int]) -> None:
        """Return claimed rows to ready; they are claimed again in their original order."""
        ...

    async def stats(self) -> OutboxStats:
        """Depth and oldest age per lane, bytes used, evictions since the store was created."""
        ...

    async def last_sequences(self) -> dict[str, int]:
        """The highest sequence number ever committed per stream (survives acks and evictions)."""
        ...

    async def close(self) -> None:
        """Release the store; claimed rows return to ready when it is opened again."""
        ...


def shed_incoming_telemetry(records: Sequence[Record], excess: int) -> tuple[list[Record], int]:
    """Drop incoming telemetry, oldest first, until ``excess`` bytes are shed.

    Both back-ends call this after evicting stored telemetry, so they shed the same rows. Returns
    the records to commit and how many were dropped; if the kept records still exceed the cap,
    the batch's business rows do not fit and the caller raises ``StoreFull``.
    """
    kept: list[Record] = []
    dropped = 0
    for record in records:
        if excess > 0 and record.lane == Lane.TELEMETRY:
            excess -= record.size
            dropped += 1
        else:
            kept.append(record)
    return kept, dropped
