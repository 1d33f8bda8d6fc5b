"""The store file read from outside the agent, for plant IT: ``plantsync buffer inspect``.

    inspect_store(path) -> StoreInspection     read-only; never writes, never migrates

    StoreInspection
      ├─ file_bytes, schema_version            the file (and its -wal) on disk
      ├─ lanes       per lane: messages, in flight, bytes, age of the oldest
      ├─ evicted_total
      ├─ streams     per stream: last seq, rows still queued, the first queued seq
      ├─ inbox       rows per status, dead letters          (None before schema 2)
      └─ archive     sent archive: rows, bytes, oldest      (None before schema 3)

The agent may be running: the file is opened with ``mode=ro`` beside it (WAL lets a reader in
beside the writer) and a busy timeout, so a moment of lock contention waits instead of failing.
It is a second process, so it uses plain ``sqlite3`` rather than the agent's ``Database``; a
store written by an older release is read as it is (the tables it lacks are reported absent),
never migrated. sqlite3 and OS errors become ``StoreError`` naming the file, in
``database.store_errors`` as everywhere else in the buffer.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from plantsync.buffer.base import Lane, RowStatus
from plantsync.buffer.database import store_errors
from plantsync.buffer.inbox import InboxStatus
from plantsync.errors import StoreError

_LANES = (
    "SELECT lane, status, COUNT(*), MIN(created_at), COALESCE(SUM(size), 0)"
    " FROM outbox GROUP BY lane, status"
)
_EVICTED = "SELECT value FROM meta WHERE key = 'evicted_total'"
_STREAMS = (
    "SELECT s.stream, s.last_seq, COUNT(o.id), MIN(o.seq) FROM streams AS s"
    " LEFT JOIN outbox AS o ON o.stream = s.stream GROUP BY s.stream ORDER BY s.stream"
)
_INBOX = "SELECT status, COUNT(*) FROM inbox GROUP BY status"
_DEAD_LETTERS = "SELECT COUNT(*) FROM dead_letters"
_ARCHIVE = "SELECT COUNT(*), MIN(sent_at), COALESCE(SUM(size), 0) FROM sent_archive"
_HAS_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"


@dataclass(frozen=True, slots=True)
class LaneInspection:
    """One outbox lane."""

    lane: Lane
    messages: int
    inflight: int
    """Claimed by the uplink and not yet acknowledged by the broker."""
    size_bytes: int
    oldest_age: float | None
    """Seconds since the oldest row was made; None when the lane is empty."""


@dataclass(frozen=True, slots=True)
class StreamInspection:
    """One stream: the last sequence number given out and the rows still queued."""

    stream: str
    last_seq: int
    queued: int
    first_queued_seq: int | None
    """The lowest seq still in the outbox; None when nothing of the stream is queued."""


@dataclass(frozen=True, slots=True)
class InboxInspection:
    """Inbound messages per status (every status present, 0 when none) and dead letters."""

    counts: dict[InboxStatus, int]
    dead_letters: int


@dataclass(frozen=True, slots=True)
class ArchiveInspection:
    """The sent archive (``archive.py``)."""

    messages: int
    size_bytes: int
    oldest_age: float | None
    """Seconds since the oldest archived row was sent; None when the archive is empty."""


@dataclass(frozen=True, slots=True)
class StoreInspection:
    """Everything ``inspect_store`` read about one store file."""

    path: Path
    file_bytes: int
    """The database file and its write-ahead log, as they lie on disk."""
    schema_version: int
    lanes: tuple[LaneInspection, ...]
    """One per ``Lane``, in lane order, empty lanes included."""
    evicted_total: int
    streams: tuple[StreamInspection, ...]
    """By stream name."""
    inbox: InboxInspection | None
    archive: ArchiveInspection | None

    @property
    def messages(self) -> int:
        """Rows in the outbox, every lane."""
        return sum(lane.messages for lane in self.lanes)


def inspect_store(path: Path, *, now: float | None = None) -> StoreInspection:
    """Read the store at ``path`` without writing it; ages are counted back from ``now``.

    Raises ``StoreError`` when there is no file at ``path`` or it cannot be read.
    """
    now = time.time() if now is None else now
    with read_only(path) as connection:
        return StoreInspection(
            path=path,
            file_bytes=_file_bytes(path),
            schema_version=connection.execute("PRAGMA user_version").fetchone()[0],
            lanes=_lanes(connection, now),
            evicted_total=_evicted_total(connection),
            streams=_streams(connection),
            inbox=_inbox(connection) if _has_table(connection, "inbox") else None,
            archive=_archive(connection, now) if _has_table(connection, "sent_archive") else None,
        )


@contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """The store file opened read-only: never written, whether the agent runs or not."""
    if not path.exists():
        raise StoreError(f"no store at {path}")
    with store_errors(path):
        uri = f"{path.resolve().as_uri()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as connection:
            connection.execute("PRAGMA busy_timeout = 5000")
            yield connection


def _file_bytes(path: Path) -> int:
    siblings = (path, path.with_name(path.name + "-wal"))
    return sum(sibling.stat().st_size for sibling in siblings if sibling.exists())


def _lanes(connection: sqlite3.Connection, now: float) -> tuple[LaneInspection, ...]:
    rows = connection.execute(_LANES).fetchall()
    lanes = []
    for lane in Lane:
        mine = [row for row in rows if row[0] == lane]
        oldest = min((row[3] for row in mine), default=None)
        lanes.append(
            LaneInspection(
                lane=lane,
                messages=sum(row[2] for row in mine),
                inflight=sum(row[2] for row in mine if row[1] == RowStatus.INFLIGHT),
                size_bytes=sum(row[4] for row in mine),
                oldest_age=None if oldest is None else now - oldest,
            )
        )
    return tuple(lanes)


def _evicted_total(connection: sqlite3.Connection) -> int:
    row = connection.execute(_EVICTED).fetchone()
    return int(row[0]) if row else 0


def _streams(connection: sqlite3.Connection) -> tuple[StreamInspection, ...]:
    return tuple(
        StreamInspection(stream, last_seq, queued, first_queued_seq)
        for stream, last_seq, queued, first_queued_seq in connection.execute(_STREAMS)
    )


def _inbox(connection: sqlite3.Connection) -> InboxInspection:
    found = dict(connection.execute(_INBOX).fetchall())
    counts = {status: int(found.get(status, 0)) for status in InboxStatus}
    (dead_letters,) = connection.execute(_DEAD_LETTERS).fetchone()
    return InboxInspection(counts, int(dead_letters))


def _archive(connection: sqlite3.Connection, now: float) -> ArchiveInspection:
    count, oldest, size = connection.execute(_ARCHIVE).fetchone()
    return ArchiveInspection(int(count), int(size), None if oldest is None else now - oldest)


def _has_table(connection: sqlite3.Connection, name: str) -> bool:
    return connection.execute(_HAS_TABLE, (name,)).fetchone() is not None
