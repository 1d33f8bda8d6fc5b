"""The durable store: outbox (up); inbox, dead letters and last-known-good schedule follow."""

from plantsync.buffer.base import (
    Claimed,
    Lane,
    LaneStats,
    Outbox,
    OutboxStats,
    Record,
    RowStatus,
)
from plantsync.buffer.memory import MemoryOutbox, MemoryStorage
from plantsync.buffer.sqlite import SqliteOutbox

__all__ = [
    "Claimed",
    "Lane",
    "LaneStats",
    "MemoryOutbox",
    "MemoryStorage",
    "Outbox",
    "OutboxStats",
    "Record",
    "RowStatus",
    "SqliteOutbox",
]
