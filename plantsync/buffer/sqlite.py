"""The durable outbox: SQLite, in the store's one database (``database.Database``).

    add    BEGIN IMMEDIATE; evict oldest ready telemetry; INSERT (executemany); streams; COMMIT
    begin  one SELECT of both lanes after the in-memory cursors (no write, no fsync); after
           split_backlog, one more SELECT for the backlog, after (or before) its own cursor
    ack    DELETE … RETURNING size        nack   in memory: the rows go back in line
           (with the sent archive on: DELETE … RETURNING the rows, archived in the same
           transaction; ``archive.py``)

``add_in`` is ``add`` inside a transaction someone else opened: the inbox commits the
acknowledgements of a settled message with the settlement itself. Dead letters and
idempotency keys count toward the same cap (``held``, ``room/held.py``: the inbox stores a dead
letter with its rejection ack in one transaction), so refused input cannot grow the file
beyond ``max_size`` unseen. Every call costs a fixed
handful of awaits, never one per row, because each aiosqlite await costs about 95 µs. Row id
lists travel as one JSON parameter (``json_each``), so no SQL is ever built from values.

Claimed rows are not marked in the file: each lane (and the backlog) has an in-memory cursor,
"the last id handed out", and ``begin`` reads the rows after it (a claim that writes costs a
transaction and an fsync per batch: docs/measured.md). Rows handed out and not yet
acknowledged are only in memory (``_claimed``); ``nack`` puts them back in line
(``_returned``, served first, in id order), eviction skips them, and a restart forgets them
all, so every unacknowledged row is sent again. ``RowStatus.INFLIGHT`` is therefore never
written by this back-end.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from plantsync.buffer.archive import ArchivePolicy, SentArchive
from plantsync.buffer.base import (
    BacklogCursor,
    Claimed,
    Lane,
    LaneStats,
    OutboxStats,
    Record,
    RowStatus,
    shed_incoming_telemetry,
)
from plantsync.buffer.database import Database, Transaction
from plantsync.buffer.room import evict_telemetry, id_list
from plantsync.buffer.room.held import (
    EVICTED_TOTAL,
    Held,
    held_at_load,
    held_now,
    room_from_dead_letters,
)
from plantsync.buffer.schema import outbox as sql
from plantsync.buffer.schema.migrations import SCHEMA_VERSION
from plantsync.config.uplink import BackfillOrder
from plantsync.errors import StoreFull

__all__ = ["SCHEMA_VERSION", "SqliteOutbox"]

_LAST_ID = 2**63 - 1


class SqliteOutbox:
    """The durable ``Outbox``. ``await SqliteOutbox.open(path, max_size_bytes=…)`` opens it alone;
    ``Store.open`` opens it together with the inbox over the same connection.

    Closing it closes the database it lives in (and so the inbox beside it).
    """

    def __init__(
        self,
        database: Database,
        *,
        max_size_bytes: int,
        size_bytes: int,
        evicted_total: int,
        archive: SentArchive | None = None,
        held: Held | None = None,
        dead_letter_cap: int | None = None,
        depths: dict[Lane, int] | None = None,
    ) -> None:
        self._database = database
        self._archive = archive
        self._connection = database.connection  # for fault injection in tests only
        self._max_size_bytes = max_size_bytes
        self._size_bytes = size_bytes
        self._evicted_total = evicted_total
        self._held = held or Held()
        """Bytes other tables hold against the cap: dead letters, idempotency keys."""
        self.dead_letter_cap = max_size_bytes // 10 if dead_letter_cap is None else dead_letter_cap
        """The most dead letters may hold (``room/held.py``); beyond, the oldest go."""
        self._depths = {lane: (depths or {}).get(lane, 0) for lane in Lane}
        """Rows per lane, counted at load and moved by every commit: ``stats`` does not scan
        the outbox, which with a large backlog held the store's one connection for seconds."""
        self._cursor = dict.fromkeys(Lane, 0)
        """Per lane, the highest id ``begin`` handed out; every row after it is unclaimed."""
        self._claimed: dict[int, Lane] = {}
        """Rows handed out by ``begin`` and neither acknowledged nor returned yet."""
        self._returned: dict[Lane, list[int]] = {lane: [] for lane in Lane}
        """Rows ``nack`` put back in line, in id order; ``begin`` serves them first."""
        self._backlog = BacklogCursor()

    @classmethod
    async def open(cls, path: Path, *, max_size_bytes: int) -> SqliteOutbox:
        """Open (or create) the store at ``path``, owner-only, and return claimed rows to ready."""
        database = await Database.open(path)
        try:
            return await cls.load(database, max_size_bytes=max_size_bytes)
        except BaseException:
            await database.close()
            raise

    @classmethod
    async def load(
        cls,
        database: Database,
        *,
        max_size_bytes: int,
        archive: ArchivePolicy | None = None,
        dead_letter_cap: int | None = None,
    ) -> SqliteOutbox:
        """The outbox of an open database; rows claimed by an earlier process return to ready.
        With an enabled ``archive`` policy, acknowledged rows are kept in the sent archive."""
        async with database.write() as transaction:
            connection = transaction.connection
            await connection.execute(sql.RELEASE_ALL, (RowStatus.READY, RowStatus.INFLIGHT))
            ((size_bytes, evicted_total),) = await connection.execute_fetchall(sql.TOTALS)
            held = await held_at_load(connection)
            depths = await connection.execute_fetchall(sql.DEPTHS)
        return cls(
            database,
            max_size_bytes=max_size_bytes,
            size_bytes=int(size_bytes),
            evicted_total=int(evicted_total),
            held=held,
            dead_letter_cap=dead_letter_cap,
            depths={Lane(lane): int(depth) for lane, depth in depths},
            archive=await SentArchive.load(database, archive)
            if archive is not None and archive.enabled
            else None,
        )

    async def add(self, records: Sequence[Record]) -> int:
        """Commit ``records`` in one transaction; see ``Outbox.add``."""
        if not records:
            return 0
        async with self._database.write() as transaction:
            return await self.add_in(transaction, records)

    async def add_in(
        self, transaction: Transaction, records: Sequence[Record], *, held: Held | None = None
    ) -> int:
        """``add`` inside the caller's write transaction, at most once per transaction.

        Raises ``StoreFull`` like ``add``; the caller's transaction then rolls back whole. The
        size and eviction counters move only when that transaction commits. ``held``: what
        dead letters and keys hold once it commits, if it stores or deletes some. When no
        telemetry is left to evict, the oldest dead letters make room before a refusal.
        """
        connection = transaction.connection
        held = self._held if held is None else held
        excess = self._size_bytes + held.total + _total_size(records) - self._max_size_bytes
        ready = [*self._backlog.unclaimed(), (self._cursor[Lane.TELEMETRY], _LAST_ID)]
        freed, evicted = await evict_telemetry(
            connection, excess, ready, self._returned[Lane.TELEMETRY]
        )
        kept, shed = shed_incoming_telemetry(records, excess - freed)
        grown = _total_size(kept) - freed
        over = self._size_bytes + held.total + grown - self._max_size_bytes
        if over > 0 and held.dead_letters > 0:
            held = await room_from_dead_letters(transaction, over, held, self.dead_letter_cap)
            over = self._size_bytes + held.total + grown - self._max_size_bytes
        if over > 0:
            raise self._store_full(records)
        await _insert(connection, kept, records, evicted + shed)
        self.hold(transaction, held)
        moved = {lane: sum(1 for record in kept if record.lane == lane) for lane in Lane}
        moved[Lane.TELEMETRY] -= evicted
        transaction.after_commit(lambda: self._count(grown, evicted + shed, moved))
        return evicted + shed

    @property
    def held(self) -> Held:
        """What dead letters and idempotency keys hold against the cap (committed)."""
        return self._held

    def hold(self, transaction: Transaction, held: Held) -> None:
        """Adopt ``held`` once the caller's transaction (which changed those rows) commits."""
        transaction.after_commit(lambda: setattr(self, "_held", held))

    async def recount_held(self) -> None:
        """Count what dead letters and keys hold anew, after retention deleted some."""
        async with self._database.read() as connection:
            self._held = await held_now(connection)

    async def begin(self, limit: int, *, backfill: int | None = None) -> list[Claimed]:
        """Claim up to ``limit`` ready rows, business lane first, each lane in id order; then
        at most ``backfill`` rows of the backlog (``split_backlog``)."""
        if limit <= 0:
            return []
        async with self._database.read() as connection:
            if any(self._returned.values()):
                rows = await self._returned_first(connection, limit)
            else:
                first, second = sorted(Lane)
                params = (
                    *(first, RowStatus.READY, self._cursor[first], limit),
                    *(second, RowStatus.READY, self._cursor[second], limit),
                )
                both = await connection.execute_fetchall(sql.NEXT_OF_BOTH, params)
                rows = sorted(both, key=_line)[:limit]
            room = limit - len(rows) if backfill is None else min(limit - len(rows), backfill)
            if room > 0 and self._backlog.pending:
                rows = [*rows, *await self._backlog_rows(connection, room)]
        return [self._claim(row) for row in rows if row[0] not in self._claimed]

    async def split_backlog(self, order: BackfillOrder) -> int:
        """The telemetry committed so far becomes the backlog; see ``Outbox.split_backlog``."""
        async with self._database.read() as connection:
            ((end, count),) = await connection.execute_fetchall(
                sql.BACKLOG_SPLIT, (Lane.TELEMETRY,)
            )
        end = int(end or 0)
        start = 0 if order == BackfillOrder.OLDEST_FIRST else end + 1
        self._backlog = BacklogCursor(end, order, cursor=start, pending=count > 0)
        self._cursor[Lane.TELEMETRY] = max(self._cursor[Lane.TELEMETRY], end)
        self._returned[Lane.TELEMETRY] = []  # all at or below ``end``: the backlog now
        return int(count)

    async def expire_backlog(self, created_before: float) -> int:
        """Delete unclaimed backlog rows made before ``created_before``, counted as evicted."""
        if not self._backlog.pending:
            return 0
        claimed = [row_id for row_id, lane in self._claimed.items() if lane == Lane.TELEMETRY]
        async with self._database.write() as transaction:
            params = (Lane.TELEMETRY, self._backlog.end, created_before, id_list(claimed))
            sizes = [
                int(size)
                for (size,) in await transaction.connection.execute_fetchall(
                    sql.EXPIRE_BACKLOG, params
                )
            ]
            freed, count = sum(sizes), len(sizes)
            if count:
                await transaction.connection.execute(sql.ADD_EVICTED, (count,))
            moved = {Lane.TELEMETRY: -count}
            transaction.after_commit(lambda: self._count(-freed, count, moved))
        return count

    async def _backlog_rows(self, connection: aiosqlite.Connection, room: int) -> list[Any]:
        """The next ``room`` backlog rows in its order; moves its cursor past them."""
        params: tuple[int, ...]
        backlog = self._backlog
        query, params = sql.BACKLOG_NEWEST, (backlog.cursor, room)
        if backlog.order == BackfillOrder.OLDEST_FIRST:
            query, params = sql.BACKLOG_OLDEST, (backlog.cursor, backlog.end, room)
        rows = list(
            await connection.execute_fetchall(query, (Lane.TELEMETRY, RowStatus.READY, *params))
        )
        backlog.pending = len(rows) == room
        if rows:
            backlog.cursor = rows[-1][0]
        return rows

    def _claim(self, row: Iterable[Any]) -> Claimed:
        """Hand one row out: remember it, move its lane's cursor, say whether it is backlog."""
        row_id, lane, message_id, stream, seq, topic, payload, created_at = row
        record = Record(message_id, Lane(lane), stream, seq, topic, bytes(payload), created_at)
        historical = record.lane == Lane.TELEMETRY and row_id <= self._backlog.end
        self._claimed[row_id] = record.lane
        if not historical:
            self._cursor[record.lane] = max(self._cursor[record.lane], row_id)
        return Claimed(row_id=row_id, record=record, historical=historical)

    async def _returned_first(self, connection: aiosqlite.Connection, limit: int) -> list[Any]:
        """``begin`` after a nack: per lane, the returned rows, then the rows after the cursor.
        A returned row gone meanwhile (evicted, or acked late) leaves its place to the next."""
        claimed: list[Any] = []
        for lane in sorted(Lane):
            while self._returned[lane] and (wanted := limit - len(claimed)) > 0:
                returned = self._returned[lane]
                ids, self._returned[lane] = returned[:wanted], returned[wanted:]
                claimed.extend(await connection.execute_fetchall(sql.ROWS_OF_IDS, (id_list(ids),)))
            wanted = limit - len(claimed)
            if wanted > 0 and not self._returned[lane]:
                params = (lane, RowStatus.READY, self._cursor[lane], wanted)
                rows = await connection.execute_fetchall(sql.NEXT_OF_LANE, params)
                claimed.extend(rows)
        return claimed

    async def ack(self, row_ids: Sequence[int]) -> None:
        """Delete acknowledged rows; unknown ids are ignored."""
        if not row_ids:
            return
        async with self._database.write() as transaction:
            connection = transaction.connection
            if self._archive is None:
                rows = await connection.execute_fetchall(sql.DELETE_IDS, (id_list(row_ids),))
                gone = [(int(size), Lane(lane)) for size, lane in rows]
            else:
                deleted = list(
                    await connection.execute_fetchall(sql.DELETE_IDS_ARCHIVED, (id_list(row_ids),))
                )
                await self._archive.add_in(transaction, deleted)
                gone = [(int(row[7]), Lane(row[1])) for row in deleted]
            freed = sum(size for size, _ in gone)
            moved = {lane: -sum(1 for _, of in gone if of == lane) for lane in Lane}
            transaction.after_commit(lambda: self._count(-freed, 0, moved))
        for row_id in row_ids:
            self._claimed.pop(row_id, None)

    async def nack(self, row_ids: Sequence[int]) -> None:
        """Return claimed rows to ready; they keep their id, hence their place in line.

        Nothing is written: claims live in memory only (see the module docstring)."""
        for row_id in row_ids:
            lane = self._claimed.pop(row_id, None)
            if lane is not None:
                bisect.insort(self._returned[lane], row_id)

    async def stats(self) -> OutboxStats:
        """Depth and oldest ``created_at`` per lane, bytes used, evictions since creation."""
        query = " UNION ALL ".join([sql.OLDEST_OF_LANE] * len(Lane))
        async with self._database.read() as connection:
            rows = await connection.execute_fetchall(
                query, [v for lane in Lane for v in (lane,) * 2]
            )
            ((dead_letters_evicted,),) = await connection.execute_fetchall(EVICTED_TOTAL)
        lanes = {
            Lane(lane): LaneStats(depth=self._depths[Lane(lane)], oldest_created_at=oldest)
            for lane, oldest in rows
        }
        return OutboxStats(
            lanes,
            self._size_bytes + self._held.total,
            self._max_size_bytes,
            self._evicted_total,
            dead_letter_bytes=self._held.dead_letters,
            key_bytes=self._held.keys,
            dead_letter_cap=self.dead_letter_cap,
            dead_letters_evicted=int(dead_letters_evicted),
        )

    async def last_sequences(self) -> dict[str, int]:
        """The highest sequence number ``add`` accepted per stream, dropped telemetry included."""
        async with self._database.read() as connection:
            rows = await connection.execute_fetchall("SELECT stream, last_seq FROM streams")
        return {stream: last_seq for stream, last_seq in rows}

    async def close(self) -> None:
        """Close the store's database; claimed rows return to ready when it is opened again."""
        await self._database.close()

    def _count(self, grown: int, evicted: int, moved: dict[Lane, int]) -> None:
        """Move the in-memory counters once the rows they count are committed."""
        self._size_bytes += grown
        self._evicted_total += evicted
        for lane, rows in moved.items():
            self._depths[lane] += rows

    def _store_full(self, records: Sequence[Record]) -> StoreFull:
        business = sum(1 for record in records if record.lane == Lane.BUSINESS)
        return StoreFull(
            f"outbox {self._database.path} full"
            f" ({self._size_bytes} of {self._max_size_bytes} bytes)"
            f" with no telemetry left to evict: {business} business rows refused until it drains"
        )


async def _insert(
    connection: aiosqlite.Connection,
    kept: Sequence[Record],
    records: Sequence[Record],
    dropped: int,
) -> None:
    """Insert the kept rows and raise every stream's sequence, in the caller's transaction."""
    await connection.executemany(sql.INSERT, map(_row_values, kept))
    # Dropped telemetry used its sequence number too: a restarted producer must not reuse it.
    await connection.executemany(sql.UPSERT_STREAM, _highest_sequences(records).items())
    if dropped:
        await connection.execute(sql.ADD_EVICTED, (dropped,))


def _row_values(record: Record) -> tuple[Any, ...]:
    return (
        record.lane,
        RowStatus.READY,
        record.message_id,
        record.stream,
        record.seq,
        record.topic,
        record.payload,
        record.size,
        record.created_at,
    )


def _line(row: Sequence[Any]) -> tuple[int, int]:
    """The order of ``begin``: business lane first, then id."""
    return int(row[1]), int(row[0])


def _highest_sequences(records: Sequence[Record]) -> dict[str, int]:
    highest: dict[str, int] = {}
    for record in records:
        highest[record.stream] = max(record.seq, highest.get(record.stream, record.seq))
    return highest


def _total_size(records: Sequence[Record]) -> int:
    return sum(record.size for record in records)
