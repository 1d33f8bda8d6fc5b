"""The durable store: outbox (up), inbox, dead letters and last-known-good schedule (down)."""

from plantsync.buffer.base import (
    Claimed,
    Lane,
    LaneStats,
    Outbox,
    OutboxStats,
    Record,
    RowStatus,
)
from plantsync.buffer.inbox import (
    DeadLetter,
    Inbox,
    InboxRow,
    InboxStats,
    InboxStatus,
    OrderState,
)
from plantsync.buffer.inbox_sqlite import SqliteInbox
from plantsync.buffer.memory import MemoryOutbox, MemoryStorage
from plantsync.buffer.retention import PruneReport, RetentionPolicy
from plantsync.buffer.sqlite import SqliteOutbox
from plantsync.buffer.store import Store

__all__ = [
    "Claimed",
    "DeadLetter",
    "Inbox",
    "InboxRow",
    "InboxStats",
    "InboxStatus",
    "Lane",
    "LaneStats",
    "MemoryOutbox",
    "MemoryStorage",
    "OrderState",
    "Outbox",
    "OutboxStats",
    "PruneReport",
    "Record",
    "RetentionPolicy",
    "RowStatus",
    "SqliteInbox",
    "SqliteOutbox",
    "Store",
]
