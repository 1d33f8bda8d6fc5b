"""The durable inbox, dead letters and last-known-good schedule, in the store's one database.

    receive   BEGIN IMMEDIATE; INSERT seen_ids … ON CONFLICT DO NOTHING RETURNING (none: a
              redelivery, stop); INSERT inbox; COMMIT
    mark_down_seq  BEGIN IMMEDIATE; UPSERT meta.last_down_seq and meta.down_seq_epoch;
              outbox.add_in(records); COMMIT
    settle    BEGIN IMMEDIATE; UPDATE inbox … RETURNING; outbox.add_in(acks); UPSERT orders
              (executemany), each with the down message and correlation id that applied it;
              COMMIT

It shares the outbox's connection and lock (``database.Database``), so a settlement, its acks
and the schedule it applied commit together or not at all. Settled rows are deleted by
``prune``; the ids stay in ``seen_ids`` until ``prune_seen`` (the dedupe horizon; see
``inbox``). Timestamps the store sets (``updated_at``, ``seen_at``, ``dead_at``, due retries,
ages) come from the clock it is given.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiosqlite

from plantsync.buffer.base import Lane, Record
from plantsync.buffer.database import Database, Transaction
from plantsync.buffer.inbox import (
    SETTLED,
    DeadLetter,
    DownSeqMark,
    InboxRow,
    InboxStats,
    InboxStatus,
    OrderState,
)
from plantsync.buffer.room.held import room_from_dead_letters
from plantsync.buffer.sqlite import SqliteOutbox
from plantsync.contracts.inbound import KEPT_PREFIX_BYTES

# Every query is one literal: the column lists are spelled out rather than composed, so no SQL
# is ever built from strings. Row readers below unpack exactly these columns.
_REMEMBER = (
    "INSERT INTO seen_ids (message_id, seen_at) VALUES (?, ?)"
    " ON CONFLICT DO NOTHING RETURNING message_id"
)
_INSERT_ROW = (
    "INSERT INTO inbox (message_id, topic, payload, received_at, seq, order_ids, target, status,"
    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " RETURNING id, message_id, topic, payload, received_at, seq, status, attempts, reason,"
    " updated_at, retry_at, order_ids, target"
)
_MARK_DOWN_SEQ = (
    "INSERT INTO meta (key, value) VALUES ('last_down_seq', ?), ('down_seq_epoch', ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_DOWN_SEQ_MARK = (
    "SELECT (SELECT value FROM meta WHERE key = 'last_down_seq'),"
    " coalesce((SELECT value FROM meta WHERE key = 'down_seq_epoch'), 0)"
)
_PENDING = (
    "SELECT id, message_id, topic, payload, received_at, seq, status, attempts, reason,"
    " updated_at, retry_at, order_ids, target FROM inbox"
    " WHERE target IS ? AND (status = ? OR (status = ? AND retry_at <= ?)) ORDER BY id LIMIT ?"
)
_WITH_STATUS = (
    "SELECT id, message_id, topic, payload, received_at, seq, status, attempts, reason,"
    " updated_at, retry_at, order_ids, target FROM inbox WHERE status = ? ORDER BY id"
)
_SETTLE = (
    "UPDATE inbox SET status = ?, reason = ?, retry_at = ?, attempts = attempts + 1,"
    " updated_at = ? WHERE id = ? RETURNING id"
)
_UPSERT_ORDER = (  # closed_at: cancelled at HQ; a higher revision opens a closed order again
    "INSERT INTO orders (order_id, revision, work_center, status, planned_start, order_json,"
    " updated_at, correlation_id, message_id, closed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?,"
    " CASE WHEN ?4 = 'Cancelled' THEN ?7 END) ON CONFLICT (order_id) DO UPDATE SET"
    " closed_at = CASE WHEN excluded.status = 'Cancelled'"
    " THEN COALESCE(orders.closed_at, excluded.updated_at)"
    " WHEN excluded.revision > orders.revision THEN NULL ELSE orders.closed_at END,"
    " revision = excluded.revision, work_center = excluded.work_center,"
    " status = excluded.status, planned_start = excluded.planned_start,"
    " order_json = excluded.order_json, updated_at = excluded.updated_at,"
    " correlation_id = excluded.correlation_id, message_id = excluded.message_id"
)
_ORDER = (
    "SELECT order_id, revision, work_center, status, order_json, updated_at, planned_start,"
    " correlation_id, message_id FROM orders WHERE order_id = ?"
)
_SCHEDULE = (
    "SELECT order_id, revision, work_center, status, order_json, updated_at, planned_start,"
    " correlation_id, message_id FROM orders WHERE ?1 IS NULL OR work_center = ?1"
    " ORDER BY planned_start IS NULL, planned_start, order_id"
)
_INSERT_DEAD = (
    "INSERT INTO dead_letters (message_id, topic, payload, reason_code, reason, received_at,"
    " dead_at, size, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id, counted"
)
_DEAD_LETTERS = (
    "SELECT id, message_id, topic, payload, reason_code, reason, received_at, dead_at, size,"
    " sha256 FROM dead_letters ORDER BY id DESC LIMIT ?"
)
_DEAD_LETTER = "SELECT message_id, topic, payload, received_at FROM dead_letters WHERE id = ?"
_DELETE_DEAD = "DELETE FROM dead_letters WHERE id = ? RETURNING counted"
_PRUNE = "DELETE FROM inbox WHERE status IN (?, ?, ?) AND updated_at < ?"
_PRUNE_SEEN = (
    "DELETE FROM seen_ids WHERE seen_at < ?"
    " AND NOT EXISTS (SELECT 1 FROM inbox WHERE inbox.message_id = seen_ids.message_id)"
)
_STATS = "SELECT status, COUNT(*), MIN(received_at) FROM inbox GROUP BY status"


class SqliteInbox:
    """The durable ``Inbox``; ``Store.open`` builds it beside the outbox it adds acks to."""

    def __init__(
        self,
        database: Database,
        outbox: SqliteOutbox,
        *,
        clock: Callable[[], float] = time.time,
        dead_letter_max_bytes: int = KEPT_PREFIX_BYTES,
    ) -> None:
        self._database = database
        self._outbox = outbox
        self._clock = clock
        self._dead_letter_max_bytes = dead_letter_max_bytes

    @property
    def clock(self) -> Callable[[], float]:
        """The clock that stamps what the store records (Unix time)."""
        return self._clock

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
        """Commit the message as RECEIVED unless its id was seen; see ``Inbox.receive``."""
        orders = json.dumps(list(order_ids))
        arrival = (message_id, topic, payload, received_at, seq, orders, target)
        async with self._database.write() as transaction:
            if await _insert_received(transaction.connection, arrival, self._clock()) is None:
                return False
        return True

    async def pending(
        self, limit: int, *, due_by: float | None = None, target: str | None = None
    ) -> list[InboxRow]:
        """RECEIVED rows and RETRY rows due by ``due_by`` (default: now) of ``target``, in
        arrival order."""
        due = self._clock() if due_by is None else due_by
        params = (target, InboxStatus.RECEIVED, InboxStatus.RETRY, due, max(limit, 0))
        return await self._rows(_PENDING, params)

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
        """Status, acks and orders in one transaction; see ``Inbox.settle``."""
        _check_settlement(status, retry_at, acks)
        params = (status, reason, retry_at, self._clock(), row_id)
        async with self._database.write() as transaction:
            if not await transaction.connection.execute_fetchall(_SETTLE, params):
                raise LookupError(f"inbox row {row_id} does not exist (pruned?)")
            if acks:
                await self._outbox.add_in(transaction, acks)
            if orders:
                await transaction.connection.executemany(_UPSERT_ORDER, map(_order_values, orders))

    async def waiting_approval(self) -> list[InboxRow]:
        """Rows held for a planner's approval, in arrival order."""
        return await self._rows(_WITH_STATUS, (InboxStatus.WAITING_APPROVAL,))

    async def applied_revision(self, order_id: str) -> int | None:
        """The revision of ``order_id`` last applied, or None."""
        order = await self.order(order_id)
        return None if order is None else order.revision

    async def order(self, order_id: str) -> OrderState | None:
        """One order of the last-known-good schedule, or None."""
        orders = await self._orders(_ORDER, (order_id,))
        return orders[0] if orders else None

    async def schedule(self, work_center: str | None = None) -> list[OrderState]:
        """The last-known-good schedule by planned start (missing last), then order id."""
        return await self._orders(_SCHEDULE, (work_center,))

    async def correlation_of(self, order_id: str) -> str | None:
        """The correlation id of the schedule that last applied ``order_id``, or None."""
        order = await self.order(order_id)
        return None if order is None else order.correlation_id

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
        """Store bad input (its first ``dead_letter_max_bytes``, its size and sha256) and its
        rejection acks in one transaction, within the store's cap; return its id. Beyond
        what dead letters may hold (``outbox.dead_letter_cap``), the oldest are evicted."""
        _check_acks(acks)
        kept = payload[: self._dead_letter_max_bytes]
        whole = (len(payload), hashlib.sha256(payload).hexdigest())
        params = (message_id, topic, kept, reason_code, reason, received_at, self._clock(), *whole)
        async with self._database.write() as transaction:
            ((dead_letter_id, counted),) = await transaction.connection.execute_fetchall(
                _INSERT_DEAD, params
            )
            held, cap = self._outbox.held.plus(dead_letters=counted), self._outbox.dead_letter_cap
            if held.dead_letters > cap:
                why = "a newer dead letter"
                held = await room_from_dead_letters(
                    transaction, held.dead_letters - cap, held, cap, why=why
                )
            await self._outbox.add_in(transaction, acks, held=held)
        return int(dead_letter_id)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest ``limit`` dead letters, newest first."""
        async with self._database.read() as connection:
            rows = await connection.execute_fetchall(_DEAD_LETTERS, (max(limit, 0),))
        return [_dead_letter(row) for row in rows]

    async def discard_dead_letter(self, dead_letter_id: int) -> bool:
        """Delete a dead letter; False if there was none."""
        async with self._database.write() as transaction:
            deleted = await transaction.connection.execute_fetchall(_DELETE_DEAD, (dead_letter_id,))
            self._unhold(transaction, deleted)
        return bool(deleted)

    async def retry_dead_letter(self, dead_letter_id: int) -> InboxRow | None:
        """Move a dead letter back into the inbox as RECEIVED; see ``Inbox.retry_dead_letter``."""
        async with self._database.write() as transaction:
            connection = transaction.connection
            found = list(await connection.execute_fetchall(_DEAD_LETTER, (dead_letter_id,)))
            if not found:
                return None
            ((message_id, topic, payload, received_at),) = found
            message_id = message_id if message_id is not None else f"dead-letter/{dead_letter_id}"
            arrival = (message_id, topic, payload, received_at, None, "[]", None)
            row = await _insert_received(connection, arrival, self._clock())
            if row is not None:
                self._unhold(
                    transaction, await connection.execute_fetchall(_DELETE_DEAD, (dead_letter_id,))
                )
        return row

    def _unhold(self, transaction: Transaction, deleted: Iterable[Any]) -> None:
        """Dead letters deleted (``RETURNING counted``) no longer count, once committed."""
        freed = sum(int(counted) for (counted,) in deleted)
        self._outbox.hold(transaction, self._outbox.held.plus(dead_letters=-freed))

    async def dead_letter_count(self) -> int:
        """How many dead letters are stored."""
        async with self._database.read() as connection:
            ((count,),) = await connection.execute_fetchall("SELECT COUNT(*) FROM dead_letters")
        return int(count)

    async def next_retry_at(self, target: str | None = None) -> float | None:
        """When the earliest RETRY row of ``target`` falls due, or None when none waits."""
        query = "SELECT MIN(retry_at) FROM inbox WHERE status = ? AND target IS ?"
        async with self._database.read() as connection:
            ((due,),) = await connection.execute_fetchall(query, (InboxStatus.RETRY, target))
        return None if due is None else float(due)

    async def last_down_seq(self) -> int | None:
        """The seq of the down sequence's mark, or None."""
        mark = await self.down_seq_mark()
        return None if mark is None else mark.seq

    async def down_seq_mark(self) -> DownSeqMark | None:
        """The down sequence's mark, or None before the first."""
        async with self._database.read() as connection:
            ((seq, epoch),) = await connection.execute_fetchall(_DOWN_SEQ_MARK)
        return None if seq is None else DownSeqMark(int(seq), int(epoch))

    async def mark_down_seq(self, mark: DownSeqMark, records: Sequence[Record] = ()) -> None:
        """The mark and its records in one transaction; see ``Inbox.mark_down_seq``."""
        async with self._database.write() as transaction:
            await transaction.connection.execute(_MARK_DOWN_SEQ, (mark.seq, mark.epoch))
            if records:
                await self._outbox.add_in(transaction, records)

    async def inbox_stats(self) -> InboxStats:
        """Rows per status, dead letters, the age of the oldest pending message."""
        async with self._database.read() as connection:
            rows = await connection.execute_fetchall(_STATS)
            ((dead_letters,),) = await connection.execute_fetchall(
                "SELECT COUNT(*) FROM dead_letters"
            )
        counts = {status: 0 for status in InboxStatus}
        oldest: list[float] = []
        for status, count, received_at in rows:
            counts[InboxStatus(status)] = count
            if status in (InboxStatus.RECEIVED, InboxStatus.RETRY):
                oldest.append(received_at)
        # Stored times are Unix times: after the wall clock stepped back, clamp, never negative.
        age = max(0.0, self._clock() - min(oldest)) if oldest else None
        return InboxStats(counts, int(dead_letters), age)

    async def prune(self, older_than: float) -> int:
        """Delete settled rows last updated before ``older_than``; their ids stay seen."""
        return await self._delete(_PRUNE, (*SETTLED, older_than))

    async def prune_seen(self, older_than: float) -> int:
        """Forget ids first seen before ``older_than`` that have no row in the inbox."""
        return await self._delete(_PRUNE_SEEN, (older_than,))

    async def _rows(self, query: str, params: Sequence[Any]) -> list[InboxRow]:
        async with self._database.read() as connection:
            rows = await connection.execute_fetchall(query, params)
        return [_inbox_row(row) for row in rows]

    async def _orders(self, query: str, params: Sequence[Any]) -> list[OrderState]:
        async with self._database.read() as connection:
            rows = await connection.execute_fetchall(query, params)
        return [order_state(row) for row in rows]

    async def _delete(self, query: str, params: Sequence[Any]) -> int:
        async with self._database.write() as transaction:
            cursor = await transaction.connection.execute(query, params)
            count = cursor.rowcount
            await cursor.close()
        return count


async def _insert_received(
    connection: aiosqlite.Connection, arrival: tuple[Any, ...], now: float
) -> InboxRow | None:
    """Remember the message id and insert the row as RECEIVED; None if the id was seen before.

    ``arrival`` is (message_id, topic, payload, received_at, seq, order_ids as JSON, target).
    """
    if not await connection.execute_fetchall(_REMEMBER, (arrival[0], now)):
        return None
    (row,) = await connection.execute_fetchall(_INSERT_ROW, (*arrival, InboxStatus.RECEIVED, now))
    return _inbox_row(row)


def _check_settlement(status: InboxStatus, retry_at: float | None, acks: Sequence[Record]) -> None:
    """Refuse settlements that are programming errors, before anything is written."""
    if status == InboxStatus.RECEIVED:
        raise ValueError("RECEIVED is where a message starts, not a settlement")
    if (status == InboxStatus.RETRY) != (retry_at is not None):
        raise ValueError("retry_at is required with RETRY and only with RETRY")
    _check_acks(acks)


def _check_acks(acks: Sequence[Record]) -> None:
    if any(ack.lane != Lane.BUSINESS for ack in acks):
        raise ValueError("acknowledgements are business records: they must never be evicted")


def _inbox_row(row: Iterable[Any]) -> InboxRow:
    """An ``InboxRow`` from the columns every inbox query selects, in their order."""
    row_id, message_id, topic, payload, received_at, seq, status, *settlement = row
    attempts, reason, updated_at, retry_at, order_ids, target = settlement
    return InboxRow(
        row_id,
        message_id,
        topic,
        bytes(payload),
        received_at,
        seq,
        InboxStatus(status),
        attempts,
        reason,
        updated_at,
        retry_at,
        tuple(json.loads(order_ids)),
        target,
    )


def order_state(row: Iterable[Any]) -> OrderState:
    """An ``OrderState`` from the orders table's columns as ``_ORDER`` and ``_SCHEDULE`` (and
    the read-only ``history`` queries) select them, in their order."""
    order_id, revision, work_center, status, order_json, updated_at, *rest = row
    planned_start, correlation_id, message_id = rest
    return OrderState(
        order_id,
        revision,
        work_center,
        status,
        bytes(order_json),
        updated_at,
        planned_start,
        correlation_id=correlation_id,
        message_id=message_id,
    )


def _order_values(order: OrderState) -> tuple[Any, ...]:
    return (
        order.order_id,
        order.revision,
        order.work_center,
        order.status,
        order.planned_start,
        order.order_json,
        order.updated_at,
        order.correlation_id,
        order.message_id,
    )


def _dead_letter(row: Iterable[Any]) -> DeadLetter:
    dead_letter_id, message_id, topic, payload, reason_code, reason, *times, size, sha256 = row
    received_at, dead_at = times
    return DeadLetter(
        dead_letter_id,
        message_id,
        topic,
        bytes(payload),
        reason_code,
        reason,
        received_at,
        dead_at,
        size=size,
        sha256=sha256,
    )
