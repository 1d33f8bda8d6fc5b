"""Where each source tag's values stopped arriving, durable across agent restarts.

    tag_marks   (link, machine_id, tag) -> source time of the last value committed live
    source_gaps id, link, machine_id, tag, start, end (both exclusive), reason   migration 9

    marks()                 every tag's mark, read once at start
    pending(link)           the gaps of one link still to backfill, oldest first
    commit(records, changes) ONE transaction: the pipeline's outbox rows, the marks they move,
                            the gaps they open, how far the historical ones fill a gap, and the
                            gaps settled after them

A mark is an open gap: it ends at the first value of the tag's next session, and that commit
turns it into a closed gap (a ``source_gaps`` row). Because marks, gaps and the outbox rows
move in one transaction, a crash leaves no value both in the outbox and in a gap, and none in
neither: a value of a gap reaches the outbox once. Times are whole microseconds since the
epoch (exact, comparable in SQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from plantsync.buffer.base import Record
from plantsync.buffer.database import Database
from plantsync.buffer.sqlite import SqliteOutbox

TagKey = tuple[str, str, str]
"""(link, machine_id, tag)."""

_MARKS = "SELECT link, machine_id, tag, source_us FROM tag_marks"
_PENDING = (
    "SELECT id, link, machine_id, tag, start_us, end_us, reason FROM source_gaps"
    " WHERE link = ? AND start_us < end_us ORDER BY id"
)
_MARK = (
    "INSERT INTO tag_marks (link, machine_id, tag, source_us, updated_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (link, machine_id, tag) DO UPDATE SET source_us = excluded.source_us,"
    " updated_at = excluded.updated_at"
)
_OPEN = (
    "INSERT INTO source_gaps (link, machine_id, tag, start_us, end_us, reason, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_ADVANCE = "UPDATE source_gaps SET start_us = ? WHERE id = ? AND start_us < ?"
_SETTLE = "DELETE FROM source_gaps WHERE id = ?"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class NewGap:
    """Values of one tag between ``start`` and ``end`` (exclusive) that did not arrive live."""

    link: str
    machine_id: str
    tag: str
    start: datetime
    end: datetime
    reason: str
    """Why: ``disconnect`` (the link or the agent was down), ``overflow`` (the server's queue
    for the item discarded values)."""


@dataclass(frozen=True, slots=True)
class StoredGap:
    """A gap in the store; ``start`` moves forward as its values are committed."""

    id: int
    link: str
    machine_id: str
    tag: str
    start: datetime
    end: datetime
    reason: str


@dataclass
class GapChanges:
    """What one pipeline commit does to the marks and the gaps."""

    marks: dict[TagKey, datetime] = field(default_factory=dict)
    opened: list[NewGap] = field(default_factory=list)
    filled: dict[int, datetime] = field(default_factory=dict)
    """Gap id -> the source time of its last value committed (its new ``start``)."""
    settled: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.marks or self.opened or self.filled or self.settled)


class SourceGaps:
    """The marks and the gaps, in the store's database beside the outbox."""

    def __init__(self, database: Database, outbox: SqliteOutbox) -> None:
        self._database, self._outbox = database, outbox

    async def marks(self) -> dict[TagKey, datetime]:
        """Every tag's last value committed live, by (link, machine, tag)."""
        async with self._database.read() as connection:
            rows = await connection.execute_fetchall(_MARKS)
        return {(link, machine, tag): _time(us) for link, machine, tag, us in rows}

    async def pending(self, link: str) -> list[StoredGap]:
        """The gaps of ``link`` not yet filled, in the order they opened."""
        async with self._database.read() as connection:
            rows = await connection.execute_fetchall(_PENDING, (link,))
        return [
            StoredGap(id, link, machine, tag, _time(start), _time(end), reason)
            for id, link, machine, tag, start, end, reason in rows
        ]

    async def commit(self, records: Sequence[Record], changes: GapChanges, now: float) -> int:
        """Commit ``records`` and ``changes`` in one transaction; returns the telemetry rows
        the outbox dropped (``Outbox.add``)."""
        async with self._database.write() as transaction:
            connection = transaction.connection
            dropped = await self._outbox.add_in(transaction, records) if records else 0
            marks = [(*key, _us(moment), now) for key, moment in changes.marks.items()]
            opened = [
                (g.link, g.machine_id, g.tag, _us(g.start), _us(g.end), g.reason, now)
                for g in changes.opened
            ]
            filled = [(_us(t), gap_id, _us(t)) for gap_id, t in changes.filled.items()]
            for statement, rows in (
                (_MARK, marks),
                (_OPEN, opened),
                (_ADVANCE, filled),
                (_SETTLE, [(gap_id,) for gap_id in changes.settled]),
            ):
                if rows:
                    await connection.executemany(statement, rows)
        return dropped


def _us(moment: datetime) -> int:
    return (moment.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))
