"""The store's one SQLite file: its schema, one aiosqlite connection, one lock, its transactions.

The outbox, the inbox, the dead letters and the last-known-good schedule share this file and
this connection, so the downlink can settle a message, record the schedule it applied and queue
its acknowledgements to HQ in ONE transaction: a crash in between can neither lose the
acknowledgement nor apply a message twice.

    read()    the lock, then the connection
    write()   the lock, BEGIN IMMEDIATE … COMMIT (ROLLBACK on any exception), then the
              transaction's after-commit callbacks (in-memory counters that must only move
              once the rows they count are durable)

Opening checks the file (``PRAGMA quick_check``). A corrupt store either raises (the default:
tools that inspect a store must not move it) or, for the agent, is moved aside and replaced by a
fresh one (``quarantine.py``); ``Database.health`` keeps that, and whether the disk under the
store was full at the last write, for the status page and metrics.

WAL with ``synchronous=FULL``: a message the producer was told is accepted survives a power cut
(NORMAL can lose the last commits; docs/measured.md). ``auto_vacuum = INCREMENTAL``, so that what
retention prunes (``retention.py``) can be given back to the disk: asked for before the first
table of a new file, and set on a store made before retention by one VACUUM at its first open
(``_use_incremental_vacuum`` says what that costs). The schema is versioned with
``PRAGMA user_version``; ``MIGRATIONS`` (``schema/migrations.py``) lists (version,
statements) and every step a file has not seen yet runs in order inside one transaction.
sqlite3 and OS errors become ``StoreError`` in ``store_errors`` only, with the original
chained; a full disk becomes ``StoreDiskFull``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiosqlite

from plantsync.buffer.quarantine import Quarantine, is_corruption, quarantine
from plantsync.buffer.schema.migrations import MIGRATIONS, Migration
from plantsync.errors import CorruptStore, StoreDiskFull, StoreError

log = logging.getLogger(__name__)

OnCorrupt = Literal["raise", "quarantine"]
"""What ``Database.open`` does with a corrupt file: raise, or move it aside and start fresh."""

_AUTO_VACUUM_INCREMENTAL = 2
"""What ``PRAGMA auto_vacuum`` reads on a store that ``PRAGMA incremental_vacuum`` can shrink."""

_PRAGMAS = (
    "PRAGMA journal_mode = WAL;"
    " PRAGMA synchronous = FULL;"
    " PRAGMA foreign_keys = ON;"
    " PRAGMA busy_timeout = 5000;"
)


@dataclass
class StoreHealth:
    """What plant IT must see about the store file itself, beyond its queues.

    Changes of the disk-full state are logged once each (an ERROR when writes start failing, a
    WARNING when they succeed again); the refused writes are counted, not logged one by one.
    """

    path: Path
    quarantine: Quarantine | None = None
    """The corrupt file this process moved aside at start-up, if any."""
    disk_full_since: float | None = None
    """Unix time of the first write that found the disk full; None while writes succeed."""
    writes_refused: int = 0
    """Write transactions refused for a full disk since start (none of them committed)."""

    @property
    def disk_full(self) -> bool:
        return self.disk_full_since is not None

    def write_refused(self, error: StoreDiskFull) -> None:
        self.writes_refused += 1
        if self.disk_full_since is None:
            self.disk_full_since = time.time()
            log.error(
                "the disk under store %s is full: telemetry is shed, business messages are"
                " refused and inbound schedules stay unacknowledged at the broker until space"
                " is freed (%s)",
                self.path,
                error.__cause__ or error,
            )

    def write_committed(self) -> None:
        if self.disk_full_since is not None:
            log.warning(
                "store %s writes again: space returned after %d refused write(s)",
                self.path,
                self.writes_refused,
            )
            self.disk_full_since = None


class Transaction:
    """A write transaction in progress: its connection, and what to do once it commits."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self.connection = connection
        self._after_commit: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the transaction is committed; never if it rolls back."""
        self._after_commit.append(callback)

    def committed(self) -> None:
        """Called by ``Database.write`` right after COMMIT, still holding the lock."""
        for callback in self._after_commit:
            callback()


class Database:
    """The store's SQLite file behind one connection, used by one coroutine at a time."""

    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path
        self.health = StoreHealth(path)
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: Path,
        migrations: Sequence[Migration] = MIGRATIONS,
        *,
        on_corrupt: OnCorrupt = "raise",
    ) -> Database:
        """Open (or create) the file at ``path``, owner-only, check it and migrate it forward.

        A corrupt file raises ``CorruptStore`` or, with ``on_corrupt="quarantine"``, is moved
        aside (``quarantine.py``) and a fresh store is opened; ``health.quarantine`` says so.
        """
        try:
            return await cls._open_checked(path, migrations)
        except CorruptStore as exc:
            if on_corrupt == "raise":
                raise
            with store_errors(path):
                moved = quarantine(path, str(exc))
            database = await cls._open_checked(path, migrations)
            database.health.quarantine = moved
            return database

    @classmethod
    async def _open_checked(cls, path: Path, migrations: Sequence[Migration]) -> Database:
        with store_errors(path):
            _create_private_file(path)
            database = cls(await aiosqlite.connect(path, isolation_level=None), path)
            try:
                await _ask_for_incremental_vacuum(database.connection)
                await database.connection.executescript(_PRAGMAS)
                await _check_integrity(database.connection, path)
                await _use_incremental_vacuum(database.connection, path)
                async with database.write() as transaction:
                    await _migrate(transaction.connection, migrations)
            except BaseException:
                await database.close()
                raise
        return database

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, alone, for reads (or for one statement that commits by itself)."""
        async with self._lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            with store_errors(self.path):
                yield self.connection

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Transaction]:
        """One write transaction; anything raised inside rolls it back and commits nothing."""
        try:
            async with self.read() as connection:
                await _begin(connection)
                changes = connection.total_changes
                transaction = Transaction(connection)
                try:
                    yield transaction
                except BaseException:
                    # SQLite rolls back by itself after some errors (SQLITE_FULL among them).
                    if connection.in_transaction:
                        await connection.rollback()
                    raise
                await connection.commit()
                transaction.committed()
        except StoreDiskFull as exc:
            self.health.write_refused(exc)
            raise
        # A transaction that changed nothing commits even on a full disk: it proves nothing.
        if connection.total_changes != changes:
            self.health.write_committed()

    async def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            with store_errors(self.path):
                await self.connection.close()


async def _begin(connection: aiosqlite.Connection) -> None:
    """BEGIN IMMEDIATE, and no transaction left open if the caller is cancelled meanwhile.

    aiosqlite runs the statement in its own thread: a task cancelled while it waits still has
    its BEGIN run there, and the next writer would meet "cannot start a transaction within a
    transaction". The rollback is queued behind the BEGIN on that thread, so it runs after it
    (a rollback without a transaction does nothing).
    """
    try:
        await connection.execute("BEGIN IMMEDIATE")
    except asyncio.CancelledError:
        await connection.rollback()
        raise


@contextmanager
def store_errors(path: Path) -> Iterator[None]:
    """The one place where sqlite3 and OS errors become ``StoreError``."""
    try:
        yield
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL:
            raise StoreDiskFull(_disk_full_message(path, exc)) from exc
        if is_corruption(exc):
            raise CorruptStore(f"store {path} is corrupt: {exc}") from exc
        raise StoreError(f"store {path}: {exc}") from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreDiskFull(_disk_full_message(path, exc)) from exc
        raise StoreError(f"store {path}: {exc}") from exc


def _disk_full_message(path: Path, error: BaseException) -> str:
    return f"store {path}: disk full, nothing from this call was committed ({error})"


def _create_private_file(path: Path) -> None:
    """Create the file owner-only before SQLite does: payloads may carry secrets."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    # SQLite gives -wal and -shm the main file's mode; tighten files left by older installs too.
    for suffix in ("", "-wal", "-shm"):
        sibling = path.with_name(path.name + suffix)
        if sibling.exists():
            sibling.chmod(0o600)


async def _check_integrity(connection: aiosqlite.Connection, path: Path) -> None:
    """Raise ``CorruptStore`` unless ``PRAGMA quick_check`` finds the file sound.

    quick_check reads every page (O(size), seconds for a large store, once per start) but
    skips the index-content cross-check of integrity_check, which costs far more.
    """
    rows = list(await connection.execute_fetchall("PRAGMA quick_check"))
    if rows != [("ok",)]:
        first = " ".join(str(row[0]) for row in rows[:3]).replace("\n", " ")
        raise CorruptStore(f"store {path} is corrupt: quick_check: {first[:300]}")


async def _ask_for_incremental_vacuum(connection: aiosqlite.Connection) -> None:
    """Ask for ``auto_vacuum = INCREMENTAL`` before anything else touches the file.

    A new file takes it with its first table; asked after the switch to WAL, which already
    writes a new file's header, it would stay NONE. An older file takes it at the VACUUM of
    ``_use_incremental_vacuum``. Asked only when not set: on a store that has it, the PRAGMA is
    a write (and would rewrite a corrupt file before it is moved aside).
    """
    ((mode,),) = await connection.execute_fetchall("PRAGMA auto_vacuum")
    if mode != _AUTO_VACUUM_INCREMENTAL:
        await connection.execute("PRAGMA auto_vacuum = INCREMENTAL")


async def _use_incremental_vacuum(connection: aiosqlite.Connection, path: Path) -> None:
    """Turn a store made before retention into one that pruning can shrink, once.

    A new file took ``auto_vacuum = INCREMENTAL`` with its first table; a file that has tables
    takes it only through a VACUUM, which rewrites the whole file: at that one start-up it costs
    time in proportion to the size (a 137 MB store opened in 3.5 s instead of 0.4 s on the
    2-core test machine) and free disk for a second copy of the file (temporary file and WAL).
    If that fails (disk full, another process holds the file) the store works as before,
    pruned pages are reused rather than returned to the disk, and the next start tries again.
    """
    ((mode,),) = await connection.execute_fetchall("PRAGMA auto_vacuum")
    if mode == _AUTO_VACUUM_INCREMENTAL:
        return
    size = _size_of(path)
    log.info("store %s: rewriting its %d bytes once, so that pruning can shrink it", path, size)
    started = time.monotonic()
    try:
        await connection.execute("VACUUM")
    except sqlite3.Error as exc:
        log.warning("store %s: not rewritten, the next start tries again: %s", path, exc)
        return
    log.info("store %s rewritten in %.1f s", path, time.monotonic() - started)


def _size_of(path: Path) -> int:
    return path.stat().st_size


async def _migrate(connection: aiosqlite.Connection, migrations: Sequence[Migration]) -> None:
    """Run the steps this file has not seen yet, in order, inside the caller's transaction."""
    ((version,),) = await connection.execute_fetchall("PRAGMA user_version")
    newest = migrations[-1][0]
    if version > newest:
        raise StoreError(
            f"store has schema version {version}, newer than {newest}: "
            "it was written by a later plantsync"
        )
    for step_version, statements in migrations:
        if step_version > version:
            for statement in statements:
                await connection.execute(statement)
