"""Shared by the outbox tests: records to add, and a harness that opens and reopens a store."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from plantsync.buffer.base import Lane, Outbox, Record
from plantsync.buffer.memory import MemoryOutbox, MemoryStorage
from plantsync.buffer.sqlite import SqliteOutbox

Backend = Literal["memory", "sqlite"]
BACKENDS: tuple[Backend, ...] = ("memory", "sqlite")
TOPIC = "plant/p1/up"
ROOMY = 10_000_000


def make_record(
    number: int,
    lane: Lane = Lane.TELEMETRY,
    *,
    stream: str | None = None,
    payload_size: int = 100,
    created_at: float | None = None,
) -> Record:
    """Record ``number``: id ``m<number>``, sequence ``number``, made at ``1000 + number``."""
    return Record(
        message_id=f"m{number}",
        lane=lane,
        stream=stream if stream is not None else f"stream-{lane.name.lower()}",
        seq=number,
        topic=TOPIC,
        payload=bytes([number % 256]) * payload_size,
        created_at=created_at if created_at is not None else 1000.0 + number,
    )


def record_size(payload_size: int = 100) -> int:
    """What one ``make_record`` row of that payload counts against the cap."""
    return make_record(0, payload_size=payload_size).size


class OutboxHarness:
    """Opens outboxes of one back-end over one store; ``reopen`` models a crashed process.

    The outbox being replaced is not closed first (a crash closes nothing); every outbox is
    closed by ``close_all`` when the test ends.
    """

    def __init__(self, backend: Backend, directory: Path) -> None:
        self.backend = backend
        self.path = directory / "outbox.sqlite3"
        self._storage = MemoryStorage()
        self._opened: list[Outbox] = []
        self._max_size_bytes = ROOMY

    async def open(self, max_size_bytes: int = ROOMY) -> Outbox:
        """An outbox over this harness's store, with the given cap."""
        self._max_size_bytes = max_size_bytes
        outbox: Outbox
        if self.backend == "memory":
            outbox = MemoryOutbox(self._storage, max_size_bytes=max_size_bytes)
        else:
            outbox = await SqliteOutbox.open(self.path, max_size_bytes=max_size_bytes)
        self._opened.append(outbox)
        return outbox

    async def reopen(self) -> Outbox:
        """A new outbox over the same store and cap, as after the process died."""
        return await self.open(self._max_size_bytes)

    async def close_all(self) -> None:
        for outbox in self._opened:
            await outbox.close()
        self._opened.clear()
