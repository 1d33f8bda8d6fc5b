"""The sent archive: messages the hub acknowledged, kept a while so an operator can replay them.

    SqliteOutbox.ack ── DELETE … RETURNING the rows ──▶ SentArchive.add_in (same transaction)
                                                          then forget what is older than
                                                          ``max_age`` or beyond ``max_bytes``
    plantsync buffer replay --since T ──▶ replay(): archived rows sent since T go back into the
                                          outbox as new rows, ``"historical": true``, same id
                                          and seq (a replay is a duplicate by design: consumers
                                          de-duplicate by id)

SQLite only; the outbox contract (``base.Outbox``) does not change: ``ack`` still deletes. A
replay never pushes the outbox past its size cap and never evicts: it stops with what fit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from plantsync.buffer.base import ROW_OVERHEAD_BYTES, RowStatus
from plantsync.buffer.database import Database, Transaction

_ARCHIVE = (
    "INSERT INTO sent_archive"
    " (lane, message_id, stream, seq, topic, payload, size, created_at, sent_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_FORGET_OLD = "DELETE FROM sent_archive WHERE sent_at < ? RETURNING size"
_OLDEST = "SELECT id, size FROM sent_archive WHERE id > ? ORDER BY id LIMIT ?"
_FORGET_UP_TO = "DELETE FROM sent_archive WHERE id <= ?"
_SIZE = "SELECT COALESCE(SUM(size), 0) FROM sent_archive"
_SINCE = (
    "SELECT id, lane, message_id, stream, seq, topic, payload, created_at FROM sent_archive"
    " WHERE sent_at >= ? AND (? IS NULL OR stream = ?) AND id > ? ORDER BY id LIMIT ?"
)
_COUNT_SINCE = "SELECT COUNT(*) FROM sent_archive WHERE sent_at >= ? AND (? IS NULL OR stream = ?)"
_REPLAY = (
    "INSERT INTO outbox (lane, status, message_id, stream, seq, topic, payload, size, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_OUTBOX_SIZE = "SELECT COALESCE(SUM(size), 0) FROM outbox"
_PAGE = 256

ArchivedRow = Sequence[Any]
"""(id, lane, message_id, stream, seq, topic, payload, size, created_at) as the outbox had it."""


@dataclass(frozen=True, slots=True)
class ArchivePolicy:
    """How long and how much to keep; ``max_age_seconds`` 0 turns the archive off."""

    max_age_seconds: float = 24 * 3600.0
    max_bytes: int = 0

    @property
    def enabled(self) -> bool:
        return self.max_age_seconds > 0 and self.max_bytes > 0


class SentArchive:
    """Acknowledged rows, bounded by age and bytes; written inside the ack's transaction."""

    def __init__(self, policy: ArchivePolicy, size_bytes: int) -> None:
        self._policy = policy
        self._size_bytes = size_bytes

    @classmethod
    async def load(cls, database: Database, policy: ArchivePolicy) -> SentArchive:
        async with database.read() as connection:
            ((size_bytes,),) = await connection.execute_fetchall(_SIZE)
        return cls(policy, int(size_bytes))

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    async def add_in(self, transaction: Transaction, rows: Sequence[ArchivedRow]) -> None:
        """Archive ``rows`` (deleted from the outbox in this transaction), then forget the
        oldest beyond the policy's age and size."""
        if not rows:
            return
        now = time.time()
        connection = transaction.connection
        await connection.executemany(_ARCHIVE, ((*row[1:], now) for row in rows))
        added = sum(int(row[7]) for row in rows)
        aged = await connection.execute_fetchall(_FORGET_OLD, (now - self._policy.max_age_seconds,))
        forgotten = sum(int(size) for (size,) in aged)
        excess = self._size_bytes + added - forgotten - self._policy.max_bytes
        forgotten += await _forget_oldest(connection, excess)
        transaction.after_commit(lambda: self._grow(added - forgotten))

    def _grow(self, delta: int) -> None:
        self._size_bytes += delta


async def _forget_oldest(connection: aiosqlite.Connection, excess: int) -> int:
    """Delete the oldest archived rows until ``excess`` bytes are gone; return the bytes."""
    freed = last_id = 0
    while freed < excess:
        page = list(await connection.execute_fetchall(_OLDEST, (last_id, _PAGE)))
        for row_id, size in page:
            if freed >= excess:
                break
            freed, last_id = freed + int(size), row_id
        if len(page) < _PAGE:
            break
    if last_id:
        await connection.execute(_FORGET_UP_TO, (last_id,))
    return freed


async def replay(
    database: Database,
    *,
    since: float,
    max_size_bytes: int,
    stream: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Queue archived messages sent at or after ``since`` again, marked historical.

    Returns (replayed, found). Each page is its own transaction, so a replay interrupted half
    way leaves whole messages only; it stops early, leaving the rest, when the outbox would
    exceed ``max_size_bytes``.
    """
    async with database.read() as connection:
        ((found,),) = await connection.execute_fetchall(_COUNT_SINCE, (since, stream, stream))
    replayed = last_id = 0
    while True:
        async with database.write() as transaction:
            connection = transaction.connection
            page = list(
                await connection.execute_fetchall(_SINCE, (since, stream, stream, last_id, _PAGE))
            )
            if not page:
                break
            ((used,),) = await connection.execute_fetchall(_OUTBOX_SIZE)
            rows = _fitting(map(_historical, page), max_size_bytes - int(used))
            await connection.executemany(_REPLAY, rows)
        replayed += len(rows)
        last_id = page[-1][0]
        if progress is not None:
            progress(replayed, int(found))
        if len(rows) < len(page):
            break
    return replayed, int(found)


def _historical(row: Iterable[Any]) -> tuple[Any, ...]:
    _, lane, message_id, stream, seq, topic, payload, _created = row
    document = json.loads(bytes(payload))
    document["historical"] = True
    rewritten = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    size = len(rewritten) + len(topic) + ROW_OVERHEAD_BYTES
    return (lane, RowStatus.READY, message_id, stream, seq, topic, rewritten, size, time.time())


def _fitting(rows: Iterable[tuple[Any, ...]], room: int) -> list[tuple[Any, ...]]:
    kept = []
    for row in rows:
        room -= row[7]
        if room < 0:
            break
        kept.append(row)
    return kept
