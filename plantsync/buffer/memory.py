"""The in-memory outbox: the contract of ``base.Outbox`` with nothing durable.

It is the reference the SQLite back-end is checked against, and the outbox of tests that do not
care about disk. A crash is modelled by keeping the ``MemoryStorage`` and building a new
``MemoryOutbox`` over it: like reopening the SQLite file, claimed rows return to ready.

Plain scans over a dict keep it obviously right; it is not meant for large backlogs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from plantsync.buffer.base import (
    Claimed,
    Lane,
    LaneStats,
    OutboxStats,
    Record,
    RowStatus,
    shed_incoming_telemetry,
)
from plantsync.config.uplink import BackfillOrder
from plantsync.errors import StoreError, StoreFull


@dataclass(slots=True)
class StoredRow:
    """One row of the memory store and whether it is claimed."""

    record: Record
    status: RowStatus = RowStatus.READY


@dataclass(slots=True)
class MemoryStorage:
    """What survives a simulated crash: the rows, stream sequences and the eviction count."""

    rows: dict[int, StoredRow] = field(default_factory=dict)
    """Row id to row; ids only grow, so the dict's insertion order is id order."""
    last_sequences: dict[str, int] = field(default_factory=dict)
    evicted_total: int = 0
    next_row_id: int = 1


class MemoryOutbox:
    """An ``Outbox`` over a ``MemoryStorage`` (a fresh one unless given)."""

    def __init__(self, storage: MemoryStorage | None = None, *, max_size_bytes: int) -> None:
        self._storage = storage if storage is not None else MemoryStorage()
        self._max_size_bytes = max_size_bytes
        self._closed = False
        self._backlog: tuple[int, BackfillOrder] | None = None
        """After ``split_backlog``: the highest backlog row id, and the order to serve it in."""
        # Whoever held the claims before is gone, as after a restart of the process.
        for row in self._storage.rows.values():
            row.status = RowStatus.READY

    @property
    def storage(self) -> MemoryStorage:
        """The storage to build the next ``MemoryOutbox`` over, to model a restart."""
        return self._storage

    async def add(self, records: Sequence[Record]) -> int:
        """Commit ``records`` atomically; see ``Outbox.add``."""
        self._require_open()
        if not records:
            return 0
        size_bytes = self._size_bytes()
        excess = size_bytes + _total_size(records) - self._max_size_bytes
        victims = self._oldest_ready_telemetry(excess)
        freed = sum(self._storage.rows[row_id].record.size for row_id in victims)
        kept, shed = shed_incoming_telemetry(records, excess - freed)
        if size_bytes - freed + _total_size(kept) > self._max_size_bytes:
            raise _store_full(records, size_bytes, self._max_size_bytes)
        self._commit(victims, kept, records)
        return len(victims) + shed

    async def begin(self, limit: int, *, backfill: int | None = None) -> list[Claimed]:
        """Claim up to ``limit`` ready rows: business, live telemetry, then the backlog."""
        self._require_open()
        rows = self._storage.rows
        ready = sorted(
            self._line(row_id, row.record)
            for row_id, row in rows.items()
            if row.status == RowStatus.READY
        )
        urgent = [item for item in ready if item[0] < _BACKLOG]
        backlog = [item for item in ready if item[0] == _BACKLOG]
        chosen = urgent[: max(limit, 0)]
        room = max(limit, 0) - len(chosen)
        chosen += backlog[: max(0, room if backfill is None else min(room, backfill))]
        claimed = [
            Claimed(row_id, rows[row_id].record, kind == _BACKLOG) for kind, _, row_id in chosen
        ]
        for item in claimed:
            rows[item.row_id].status = RowStatus.INFLIGHT
        return claimed

    async def split_backlog(self, order: BackfillOrder) -> int:
        """Every telemetry row so far is the backlog, served last in ``order``."""
        self._require_open()
        telemetry = [
            row_id
            for row_id, row in self._storage.rows.items()
            if row.record.lane == Lane.TELEMETRY
        ]
        self._backlog = (max(telemetry, default=0), order)
        return len(telemetry)

    async def expire_backlog(self, created_before: float) -> int:
        """Delete ready backlog rows created before ``created_before``; counted as evicted."""
        self._require_open()
        rows = self._storage.rows
        victims = [
            row_id
            for row_id, row in rows.items()
            if row.status == RowStatus.READY
            and self._line(row_id, row.record)[0] == _BACKLOG
            and row.record.created_at < created_before
        ]
        for row_id in victims:
            del rows[row_id]
        self._storage.evicted_total += len(victims)
        return len(victims)

    def _line(self, row_id: int, record: Record) -> tuple[int, int, int]:
        """(kind, position, id): business, then live telemetry, then the backlog in order."""
        if record.lane == Lane.BUSINESS:
            return 0, row_id, row_id
        if self._backlog is None or row_id > self._backlog[0]:
            return 1, row_id, row_id
        newest_first = self._backlog[1] == BackfillOrder.NEWEST_FIRST
        return _BACKLOG, -row_id if newest_first else row_id, row_id

    async def ack(self, row_ids: Sequence[int]) -> None:
        """Delete acknowledged rows; unknown ids are ignored."""
        self._require_open()
        for row_id in row_ids:
            self._storage.rows.pop(row_id, None)

    async def nack(self, row_ids: Sequence[int]) -> None:
        """Return claimed rows to ready; they keep their id, hence their place in line."""
        self._require_open()
        for row_id in row_ids:
            row = self._storage.rows.get(row_id)
            if row is not None:
                row.status = RowStatus.READY

    async def stats(self) -> OutboxStats:
        """Depth and oldest ``created_at`` per lane, bytes used, evictions so far."""
        self._require_open()
        lanes = {lane: self._lane_stats(lane) for lane in Lane}
        return OutboxStats(
            lanes=lanes,
            size_bytes=self._size_bytes(),
            max_size_bytes=self._max_size_bytes,
            evicted_total=self._storage.evicted_total,
        )

    async def last_sequences(self) -> dict[str, int]:
        """The highest sequence number ``add`` accepted per stream."""
        self._require_open()
        return dict(self._storage.last_sequences)

    async def close(self) -> None:
        """Stop using the storage; a later ``MemoryOutbox`` over it may pick it up."""
        self._closed = True

    def _require_open(self) -> None:
        if self._closed:
            raise StoreError("memory outbox is closed")

    def _size_bytes(self) -> int:
        return _total_size([row.record for row in self._storage.rows.values()])

    def _oldest_ready_telemetry(self, excess: int) -> list[int]:
        """Ids of the oldest ready telemetry rows whose sizes add up to ``excess`` (or all)."""
        victims: list[int] = []
        for row_id, row in self._storage.rows.items():
            if excess <= 0:
                break
            if row.record.lane == Lane.TELEMETRY and row.status == RowStatus.READY:
                victims.append(row_id)
                excess -= row.record.size
        return victims

    def _commit(self, victims: list[int], kept: list[Record], records: Sequence[Record]) -> None:
        storage = self._storage
        for row_id in victims:
            del storage.rows[row_id]
        for record in kept:
            storage.rows[storage.next_row_id] = StoredRow(record)
            storage.next_row_id += 1
        # Dropped telemetry used its sequence number too: a restarted producer must not reuse it.
        for record in records:
            previous = storage.last_sequences.get(record.stream, record.seq)
            storage.last_sequences[record.stream] = max(previous, record.seq)
        storage.evicted_total += len(victims) + len(records) - len(kept)

    def _lane_stats(self, lane: Lane) -> LaneStats:
        created = [
            row.record.created_at for row in self._storage.rows.values() if row.record.lane == lane
        ]
        return LaneStats(depth=len(created), oldest_created_at=min(created, default=None))


_BACKLOG = 2
"""The kind of a backlog row in ``MemoryOutbox._line``: served after business and live rows."""


def _total_size(records: Sequence[Record]) -> int:
    return sum(record.size for record in records)


def _store_full(records: Sequence[Record], size_bytes: int, max_size_bytes: int) -> StoreFull:
    """The error both back-ends raise when a batch's business rows do not fit."""
    business = sum(1 for record in records if record.lane == Lane.BUSINESS)
    return StoreFull(
        f"outbox full ({size_bytes} of {max_size_bytes} bytes) with no telemetry left to evict:"
        f" {business} business rows refused until the outbox drains"
    )
