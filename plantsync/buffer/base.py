"""The outbox contract, after Telegraf's buffer transactions.

    add(records) -> dropped      commit records durably; telemetry shed to stay under the cap
    begin(limit) -> batch        claim up to ``limit`` ready rows, business lane first
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

    async def begin(self, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` ready rows: business lane first, each lane in insertion order."""
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
