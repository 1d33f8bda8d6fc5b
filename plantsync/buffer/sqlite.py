"""The durable outbox: SQLite through one aiosqlite connection.

    add    BEGIN IMMEDIATE; evict oldest ready telemetry; INSERT (executemany); streams; COMMIT
    begin  BEGIN IMMEDIATE; UPDATE … RETURNING per lane, business first; COMMIT
    ack    DELETE … RETURNING size        nack   UPDATE status = READY

WAL with ``synchronous=FULL``: a message the producer was told is accepted survives a power cut
(NORMAL can lose the last commits; MEASURED.md). Every call costs a fixed handful of awaits,
never one per row, because each aiosqlite await costs about 95 µs. Row id lists travel as one
JSON parameter (``json_each``), so no SQL is ever built from values.

sqlite3 errors become ``StoreError`` in ``_store_errors`` only, with the original chained.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from plantsync.buffer.base import (
    Claimed,
    Lane,
    LaneStats,
    OutboxStats,
    Record,
    RowStatus,
    shed_incoming_telemetry,
)
from plantsync.errors import StoreError, StoreFull

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of a store this code writes; older stores are migrated forward."""

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 0 -> 1
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, lane INTEGER NOT NULL,"
        " status INTEGER NOT NULL, message_id TEXT NOT NULL, stream TEXT NOT NULL,"
        " seq INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,"
        " size INTEGER NOT NULL, created_at REAL NOT NULL)",
        "CREATE INDEX outbox_claim ON outbox (lane, status, id)",
        "CREATE TABLE streams (stream TEXT PRIMARY KEY, last_seq INTEGER NOT NULL)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO meta (key, value) VALUES ('evicted_total', 0)",
        "PRAGMA user_version = 1",
    ),
)

_PRAGMAS = (
    "PRAGMA journal_mode = WAL;"
    " PRAGMA synchronous = FULL;"
    " PRAGMA foreign_keys = ON;"
    " PRAGMA busy_timeout = 5000;"
)
_INSERT = (
    "INSERT INTO outbox (lane, status, message_id, stream, seq, topic, payload, size, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_STREAM = (
    "INSERT INTO streams (stream, last_seq) VALUES (?, ?)"
    " ON CONFLICT (stream) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)"
)
_ADD_EVICTED = "UPDATE meta SET value = value + ? WHERE key = 'evicted_total'"
_OLDEST_READY = (
    "SELECT id, size FROM outbox WHERE lane = ? AND status = ? AND id > ? ORDER BY id LIMIT ?"
)
_DELETE_READY_UP_TO = "DELETE FROM outbox WHERE lane = ? AND status = ? AND id <= ?"
_CLAIM = (
    "UPDATE outbox SET status = ? WHERE id IN"
    " (SELECT id FROM outbox WHERE lane = ? AND status = ? ORDER BY id LIMIT ?)"
    " RETURNING id, lane, message_id, stream, seq, topic, payload, created_at"
)
_DELETE_IDS = "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?)) RETURNING size"
_RELEASE_IDS = (
    "UPDATE outbox SET status = ? WHERE status = ? AND id IN (SELECT value FROM json_each(?))"
)
_EVICTION_PAGE = 256


class SqliteOutbox:
    """The durable ``Outbox``. Open it with ``await SqliteOutbox.open(path, max_size_bytes=…)``.

    One connection, used by one coroutine at a time (an asyncio lock around each transaction).
    """

    def __init__(
        self,
        connection: aiosqlite.Connection,
        *,
        path: Path,
        max_size_bytes: int,
        size_bytes: int,
        evicted_total: int,
    ) -> None:
        self._connection = connection
        self._path = path
        self._max_size_bytes = max_size_bytes
        self._size_bytes = size_bytes
        self._evicted_total = evicted_total
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: Path, *, max_size_bytes: int) -> SqliteOutbox:
        """Open (or create) the store at ``path``, owner-only, and return claimed rows to ready."""
        with _store_errors(path):
            _create_private_file(path)
            connection = await aiosqlite.connect(path, isolation_level=None)
            try:
                size_bytes, evicted_total = await _prepare(connection)
            except BaseException:
                await connection.close()
                raise
        return cls(
            connection,
            path=path,
            max_size_bytes=max_size_bytes,
            size_bytes=size_bytes,
            evicted_total=evicted_total,
        )

    async def add(self, records: Sequence[Record]) -> int:
        """Commit ``records`` in one transaction; see ``Outbox.add``."""
        if not records:
            return 0
        async with self._write() as connection:
            excess = self._size_bytes + _total_size(records) - self._max_size_bytes
            freed, evicted = await _evict_telemetry(connection, excess)
            kept, shed = shed_incoming_telemetry(records, excess - freed)
            size_bytes = self._size_bytes - freed + _total_size(kept)
            if size_bytes > self._max_size_bytes:
                raise self._store_full(records)  # rolls back the evictions too
            await _insert(connection, kept, records, evicted + shed)
        self._size_bytes = size_bytes
        self._evicted_total += evicted + shed
        return evicted + shed

    async def begin(self, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` ready rows, business lane first, each lane in id order."""
        claimed: list[Claimed] = []
        if limit <= 0:
            return claimed
        async with self._write() as connection:
            for lane in sorted(Lane):
                wanted = limit - len(claimed)
                if wanted > 0:
                    params = (RowStatus.INFLIGHT, lane, RowStatus.READY, wanted)
                    rows = await connection.execute_fetchall(_CLAIM, params)
                    # RETURNING has no defined order; the lane's order is the id order.
                    claimed.extend(sorted(map(_claimed, rows), key=lambda item: item.row_id))
        return claimed

    async def ack(self, row_ids: Sequence[int]) -> None:
        """Delete acknowledged rows; unknown ids are ignored."""
        if not row_ids:
            return
        async with self._write() as connection:
            rows = await connection.execute_fetchall(_DELETE_IDS, (_id_list(row_ids),))
        self._size_bytes -= sum(int(size) for (size,) in rows)

    async def nack(self, row_ids: Sequence[int]) -> None:
        """Return claimed rows to ready; they keep their id, hence their place in line."""
        if not row_ids:
            return
        params = (RowStatus.READY, RowStatus.INFLIGHT, _id_list(row_ids))
        async with self._write() as connection:
            await connection.execute(_RELEASE_IDS, params)

    async def stats(self) -> OutboxStats:
        """Depth and oldest ``created_at`` per lane, bytes used, evictions since creation."""
        query = "SELECT lane, COUNT(*), MIN(created_at) FROM outbox GROUP BY lane"
        async with self._read() as connection:
            rows = await connection.execute_fetchall(query)
        lanes = {lane: LaneStats() for lane in Lane}
        for lane, depth, oldest in rows:
            lanes[Lane(lane)] = LaneStats(depth=depth, oldest_created_at=oldest)
        return OutboxStats(lanes, self._size_bytes, self._max_size_bytes, self._evicted_total)

    async def last_sequences(self) -> dict[str, int]:
        """The highest sequence number ``add`` accepted per stream, dropped telemetry included."""
        async with self._read() as connection:
            rows = await connection.execute_fetchall("SELECT stream, last_seq FROM streams")
        return {stream: last_seq for stream, last_seq in rows}

    async def close(self) -> None:
        """Close the connection; claimed rows return to ready when the store is opened again."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            with _store_errors(self._path):
                await self._connection.close()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            if self._closed:
                raise StoreError(f"outbox {self._path} is closed")
            with _store_errors(self._path):
                yield self._connection

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; anything raised inside rolls it back."""
        async with self._read() as connection:
            await connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                # SQLite rolls back by itself after some errors (SQLITE_FULL among them).
                if connection.in_transaction:
                    await connection.rollback()
                raise
            await connection.commit()

    def _store_full(self, records: Sequence[Record]) -> StoreFull:
        business = sum(1 for record in records if record.lane == Lane.BUSINESS)
        return StoreFull(
            f"outbox {self._path} full ({self._size_bytes} of {self._max_size_bytes} bytes)"
            f" with no telemetry left to evict: {business} business rows refused until it drains"
        )


@contextmanager
def _store_errors(path: Path) -> Iterator[None]:
    """The one place where sqlite3 and OS errors become ``StoreError``."""
    try:
        yield
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL:
            message = f"outbox {path}: disk full, nothing from this call was committed ({exc})"
            raise StoreError(message) from exc
        raise StoreError(f"outbox {path}: {exc}") from exc
    except OSError as exc:
        raise StoreError(f"outbox {path}: {exc}") from exc


def _create_private_file(path: Path) -> None:
    """Create the file owner-only before SQLite does: payloads may carry secrets."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    # SQLite gives -wal and -shm the main file's mode; tighten files left by older installs too.
    for suffix in ("", "-wal", "-shm"):
        sibling = path.with_name(path.name + suffix)
        if sibling.exists():
            sibling.chmod(0o600)


async def _prepare(connection: aiosqlite.Connection) -> tuple[int, int]:
    """Set PRAGMAs, migrate, return claimed rows to ready; return (size_bytes, evicted_total)."""
    await connection.executescript(_PRAGMAS)
    await connection.execute("BEGIN IMMEDIATE")
    try:
        await _migrate(connection)
        release = "UPDATE outbox SET status = ? WHERE status = ?"
        await connection.execute(release, (RowStatus.READY, RowStatus.INFLIGHT))
        totals = await connection.execute_fetchall(
            "SELECT (SELECT COALESCE(SUM(size), 0) FROM outbox),"
            " (SELECT value FROM meta WHERE key = 'evicted_total')"
        )
    except BaseException:
        await connection.rollback()
        raise
    await connection.commit()
    ((size_bytes, evicted_total),) = totals
    return int(size_bytes), int(evicted_total)


async def _migrate(connection: aiosqlite.Connection) -> None:
    """Run the migrations this store has not seen yet, inside the caller's transaction."""
    ((version,),) = await connection.execute_fetchall("PRAGMA user_version")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"store has schema version {version}, newer than {SCHEMA_VERSION}: "
            "it was written by a later plantsync"
        )
    for migration in _MIGRATIONS[version:]:
        for statement in migration:
            await connection.execute(statement)


async def _evict_telemetry(connection: aiosqlite.Connection, excess: int) -> tuple[int, int]:
    """Delete the oldest ready telemetry until ``excess`` bytes are freed; return (bytes, rows).

    Pages through the (lane, status, id) index so a large backlog is not scanned whole.
    """
    freed = count = last_id = 0
    while freed < excess:
        params = (Lane.TELEMETRY, RowStatus.READY, last_id, _EVICTION_PAGE)
        page = list(await connection.execute_fetchall(_OLDEST_READY, params))
        for row_id, size in page:
            if freed >= excess:
                break
            freed, count, last_id = freed + size, count + 1, row_id
        if len(page) < _EVICTION_PAGE:
            break
    if count:
        await connection.execute(_DELETE_READY_UP_TO, (Lane.TELEMETRY, RowStatus.READY, last_id))
    return freed, count


async def _insert(
    connection: aiosqlite.Connection,
    kept: Sequence[Record],
    records: Sequence[Record],
    dropped: int,
) -> None:
    """Insert the kept rows and raise every stream's sequence, in the caller's transaction."""
    await connection.executemany(_INSERT, map(_row_values, kept))
    # Dropped telemetry used its sequence number too: a restarted producer must not reuse it.
    await connection.executemany(_UPSERT_STREAM, _highest_sequences(records).items())
    if dropped:
        await connection.execute(_ADD_EVICTED, (dropped,))


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


def _claimed(row: Iterable[Any]) -> Claimed:
    row_id, lane, message_id, stream, seq, topic, payload, created_at = row
    record = Record(message_id, Lane(lane), stream, seq, topic, bytes(payload), created_at)
    return Claimed(row_id=row_id, record=record)


def _highest_sequences(records: Sequence[Record]) -> dict[str, int]:
    highest: dict[str, int] = {}
    for record in records:
        highest[record.stream] = max(record.seq, highest.get(record.stream, record.seq))
    return highest


def _id_list(row_ids: Sequence[int]) -> str:
    return json.dumps([int(row_id) for row_id in row_ids])


def _total_size(records: Sequence[Record]) -> int:
    return sum(record.size for record in records)
