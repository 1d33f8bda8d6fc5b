"""The inbox contract: schedules from HQ, durable before the broker is told, settled once.

    receive(message_id, …) -> bool    commit an inbound message BEFORE the MQTT ack;
                                      False when its id was seen before (a redelivery)
    pending(limit)                    RECEIVED rows, and RETRY rows that are due, in arrival order
    settle(row_id, status, …)         ONE transaction: the row's new status, the acknowledgements
                                      to HQ (outbox rows) and the orders it applied
    dead_letter(…)                    bad input, stored with its reason and its rejection ack
    mark_down_seq(mark, records)      ONE transaction: the down sequence's new mark (for gap
                                      detection) and the records it causes (acks, resyncs)

    RECEIVED ─▶ RETRY (a plant system is down; due again at retry_at) ─▶ …
             ─▶ WAITING_APPROVAL (a planner decides on the status page) ─▶ APPLIED | REJECTED
             ─▶ APPLIED | REJECTED | FAILED                                (settled; prunable)

The orders table is the last-known-good schedule: the canonical order as last applied, its
revision (a revision older than the applied one is stale) and its plant-side status. The plant
keeps running on it while the hub is unreachable.

Dedupe horizon: a message id is remembered in ``seen_ids`` from ``receive`` on. ``prune`` deletes
settled rows but not their ids; ``prune_seen`` forgets ids older than the horizon, never one
whose row is still in the inbox. With the defaults below a redelivery is recognised for at
least ``DEDUPE_HORIZON_SECONDS`` (30 days) after the message was first received, far longer than
a broker keeps a queued message. The agent prunes on a schedule through ``retention.py``: the
same rules, with the configured windows, in short batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from plantsync.buffer.base import Record

SETTLED_RETENTION_SECONDS = 7 * 24 * 3600.0
"""How long settled rows stay for inspection before ``prune`` may delete them."""

DEDUPE_HORIZON_SECONDS = 30 * 24 * 3600.0
"""How long a message id is remembered for dedupe before ``prune_seen`` may forget it."""


class InboxStatus(IntEnum):
    """Where an inbound message is; stored as an integer."""

    RECEIVED = 0
    RETRY = 1
    WAITING_APPROVAL = 2
    APPLIED = 3
    REJECTED = 4
    FAILED = 5


SETTLED = (InboxStatus.APPLIED, InboxStatus.REJECTED, InboxStatus.FAILED)
"""Final statuses: rows in them may be pruned once older than the retention."""


@dataclass(frozen=True, slots=True)
class InboxRow:
    """One inbound message and what became of it."""

    row_id: int
    message_id: str
    topic: str
    payload: bytes
    received_at: float
    seq: int | None
    status: InboxStatus
    attempts: int
    """How many times it was settled (a retry counts)."""
    reason: str | None
    updated_at: float
    retry_at: float | None = None
    order_ids: tuple[str, ...] = ()
    target: str | None = None
    """The link that applies it (an ``alarm.ack``: its OPC UA server, ``opcua:<name>``);
    None: the plant system that takes the schedule."""


@dataclass(frozen=True, slots=True)
class OrderState:
    """One order of the last-known-good schedule, as last applied at the plant."""

    order_id: str
    revision: int
    work_center: str
    status: str
    """Released, Held, Cancelled, Running, Ended, …"""
    order_json: bytes
    """The canonical order as last applied."""
    updated_at: float
    planned_start: str | None = None
    """ISO 8601 in UTC, one format for all orders: the schedule is sorted by this text."""
    correlation_id: str | None = None
    """The correlation id of the down message that applied this revision (its message id when
    it carried none, as in its acks), for the order's status and confirmations to HQ. Stored
    with the order, so it outlives a restart; None for orders applied before schema 4."""
    message_id: str | None = None
    """The id of the down message that applied this revision; None before schema 4."""


@dataclass(frozen=True, slots=True)
class DownSeqMark:
    """Where the site's down sequence stands: the highest ``seq`` received in ``epoch``."""

    seq: int
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Bad input kept for plant IT: what arrived, when, and why it was refused."""

    id: int
    message_id: str | None
    topic: str
    payload: bytes
    reason_code: str
    reason: str
    received_at: float
    dead_at: float
    size: int | None = None
    """The whole message's bytes; ``payload`` keeps at most its first bytes. None for dead
    letters stored before the store kept it (their payload is whole)."""
    sha256: str | None = None
    """Hex sha256 of the whole message (None as ``size``)."""

    @property
    def whole(self) -> bool:
        """Whether ``payload`` is the whole message (a retry can parse it again)."""
        return self.size is None or self.size == len(self.payload)


@dataclass(frozen=True, slots=True)
class InboxStats:
    """What the status page and metrics show about the inbox."""

    counts: dict[InboxStatus, int] = field(default_factory=dict)
    dead_letters: int = 0
    oldest_pending_age: float | None = None
    """Seconds since the oldest RECEIVED or RETRY message arrived; None when there is none."""

    @property
    def pending(self) -> int:
        return self.counts.get(InboxStatus.RECEIVED, 0) + self.counts.get(InboxStatus.RETRY, 0)


class Inbox(Protocol):
    """The durable store between the MQTT subscription and the downlink."""

    async def receive(
        self,
        message_id: str,
        topic: str,
        payload: bytes,
        *,
        received_at: float,
        seq: int | None,
        order_ids: Sequence[str] = (),
        target: str | None = None,
    ) -> bool:
        """Commit an inbound message as RECEIVED; False (nothing stored) if its id was seen.

        ``seq`` is kept with the row; the down sequence's mark is ``mark_down_seq``'s.
        ``target``: the link that applies it (``InboxRow.target``)."""
        ...

    async def pending(
        self, limit: int, *, due_by: float | None = None, target: str | None = None
    ) -> list[InboxRow]:
        """Up to ``limit`` RECEIVED rows and RETRY rows due by ``due_by`` (default: now), in
        arrival order (not claimed), of one ``target`` (None: the plant system's)."""
        ...

    async def next_retry_at(self, target: str | None = None) -> float | None:
        """When the earliest RETRY row of ``target`` falls due; the downlink keeps arrival
        order by waiting."""
        ...

    async def settle(
        self,
        row_id: int,
        status: InboxStatus,
        *,
        reason: str | None = None,
        acks: Sequence[Record] = (),
        orders: Sequence[OrderState] = (),
        retry_at: float | None = None,
    ) -> None:
        """In ONE transaction: set the row's status and reason (attempts + 1), add ``acks`` to
        the outbox like ``Outbox.add`` and upsert ``orders`` into the schedule.

        ``retry_at`` is required with RETRY and refused otherwise; RECEIVED is not a settlement;
        acks must be business records. Raises ``StoreFull`` (nothing committed) when the acks do
        not fit, ``LookupError`` for an unknown row.
        """
        ...

    async def waiting_approval(self) -> list[InboxRow]:
        """Rows held for a planner's approval, in arrival order."""
        ...

    async def applied_revision(self, order_id: str) -> int | None:
        """The revision of ``order_id`` last applied, or None if it never was."""
        ...

    async def order(self, order_id: str) -> OrderState | None:
        """One order of the last-known-good schedule."""
        ...

    async def schedule(self, work_center: str | None = None) -> list[OrderState]:
        """The last-known-good schedule (one work center's, or all), by planned start then id;
        orders without a planned start come last."""
        ...

    async def correlation_of(self, order_id: str) -> str | None:
        """The correlation id of the schedule that last applied ``order_id`` (see
        ``OrderState.correlation_id``); None for an order never applied or applied before
        the store kept it."""
        ...

    async def dead_letter(
        self,
        topic: str,
        payload: bytes,
        reason_code: str,
        reason: str,
        *,
        received_at: float,
        message_id: str | None,
        acks: Sequence[Record] = (),
    ) -> int:
        """Store bad input with its reason and add its rejection ``acks``, in one transaction;
        return the dead letter's id. Raises ``StoreFull`` (nothing committed) like ``settle``."""
        ...

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest ``limit`` dead letters, newest first."""
        ...

    async def discard_dead_letter(self, dead_letter_id: int) -> bool:
        """Delete a dead letter; False if there was none with that id."""
        ...

    async def retry_dead_letter(self, dead_letter_id: int) -> InboxRow | None:
        """Move a dead letter back into the inbox as a fresh RECEIVED row, with its message id
        (``dead-letter/<id>`` when it had none). None, and the dead letter stays, when there is
        no such dead letter or its message id was already received."""
        ...

    async def dead_letter_count(self) -> int:
        """How many dead letters are stored."""
        ...

    async def last_down_seq(self) -> int | None:
        """The seq of the down sequence's mark, None before the first; see ``down_seq_mark``."""
        ...

    async def down_seq_mark(self) -> DownSeqMark | None:
        """The down sequence's mark as ``mark_down_seq`` last set it; None before the first."""
        ...

    async def mark_down_seq(self, mark: DownSeqMark, records: Sequence[Record] = ()) -> None:
        """In ONE transaction: set the mark (to exactly ``mark``: whether a seq moves it, and
        a reset moves it back, is the caller's decision) and add ``records`` to the outbox like
        ``Outbox.add``. Raises ``StoreFull`` (nothing committed) when they do not fit."""
        ...

    async def inbox_stats(self) -> InboxStats:
        """Rows per status, dead letters, the age of the oldest pending message."""
        ...

    async def prune(self, older_than: float) -> int:
        """Delete settled rows last updated before ``older_than`` (unix time); their message
        ids stay remembered for dedupe. Return how many rows were deleted."""
        ...

    async def prune_seen(self, older_than: float) -> int:
        """Forget message ids first seen before ``older_than``, except those still in the
        inbox: the end of the dedupe horizon. Return how many were forgotten."""
        ...
