"""Where each polled endpoint goes on from: its cursor and the validators of its last answer.

    poll_cursors (endpoint PRIMARY KEY, cursor, etag, last_modified, updated_at)   migration 7

    get(endpoint)                       the state the next request starts from; None: never read
    commit(endpoint, state, records)    ONE transaction: the page's messages into the outbox and
                                        the cursor past them; a crash before it commits leaves
                                        both as they were, after it both are there

So a restart neither re-reads a page whose messages are in the outbox nor misses one whose
messages are not: the cursor can never run ahead of (or behind) what was made durable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from plantsync.buffer.base import Record
from plantsync.buffer.database import Database
from plantsync.buffer.sqlite import SqliteOutbox

_GET = "SELECT cursor, etag, last_modified FROM poll_cursors WHERE endpoint = ?"
_ALL = "SELECT endpoint, cursor, etag, last_modified FROM poll_cursors ORDER BY endpoint"
_UPSERT = (
    "INSERT INTO poll_cursors (endpoint, cursor, etag, last_modified, updated_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (endpoint) DO UPDATE SET cursor = excluded.cursor,"
    " etag = excluded.etag, last_modified = excluded.last_modified,"
    " updated_at = excluded.updated_at"
)


@dataclass(frozen=True, slots=True)
class CursorState:
    """Where an endpoint's next request starts, and what the last answer to it said."""

    cursor: str | None = None
    """The value of the cursor parameter (last id, last MES time, page token); None: none sent."""
    etag: str | None = None
    """The ETag of the last answer to the request ``cursor`` makes; sent as If-None-Match."""
    last_modified: str | None = None
    """Its Last-Modified; sent as If-Modified-Since."""


class PollCursors:
    """The cursors of the polled endpoints, in the store's database beside the outbox."""

    def __init__(self, database: Database, outbox: SqliteOutbox) -> None:
        self._database, self._outbox = database, outbox

    async def get(self, endpoint: str) -> CursorState | None:
        """The state the next poll of ``endpoint`` starts from; None if it was never read."""
        async with self._database.read() as connection:
            rows = list(await connection.execute_fetchall(_GET, (endpoint,)))
        if not rows:
            return None
        cursor, etag, last_modified = rows[0]
        return CursorState(cursor, etag, last_modified)

    async def all(self) -> dict[str, CursorState]:
        """Every endpoint's state, by name (for inspection)."""
        async with self._database.read() as connection:
            rows = await connection.execute_fetchall(_ALL)
        return {endpoint: CursorState(*state) for endpoint, *state in rows}

    async def commit(
        self, endpoint: str, state: CursorState, records: Sequence[Record], now: float
    ) -> int:
        """Commit ``records`` and move ``endpoint``'s cursor to ``state`` in one transaction.

        Returns how many telemetry rows the outbox dropped (``Outbox.add``); raises
        ``StoreFull`` (and moves nothing) when the business rows do not fit.
        """
        values = (endpoint, state.cursor, state.etag, state.last_modified, now)
        async with self._database.write() as transaction:
            dropped = await self._outbox.add_in(transaction, records) if records else 0
            await transaction.connection.execute(_UPSERT, values)
        return dropped
