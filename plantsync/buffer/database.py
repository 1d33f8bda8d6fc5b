"""The store's one SQLite file: its schema, one aiosqlite connection, one lock, its transactions.

The outbox, the inbox, the dead letters and the last-known-good schedule share this file and
this connection, so the downlink can settle a message, record the schedule it applied and queue
its acknowledgements to HQ in ONE transaction: a crash in between can neither lose the
acknowledgement nor apply a message twice.

    read()    the lock, then the connection
    write()   the lock, BEGIN IMMEDIATE … COMMIT (ROLLBACK on any exception), then the
              transaction's after-commit callbacks (in-memory counters that must only move
              once the rows they count are durable)

WAL with ``synchronous=FULL``: a message the producer was told is accepted survives a power cut
(NORMAL can lose the last commits; MEASURED.md). The schema is versioned with
``PRAGMA user_version``; ``MIGRATIONS`` lists (version, statements) and every step a file has not
seen yet runs in order inside one transaction. sqlite3 and OS errors become ``StoreError`` in
``store_errors`` only, with the original chained.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiosqlite

from plantsync.errors import StoreError

Migration = tuple[int, tuple[str, ...]]
"""A schema version and the statements that bring the previous version to it."""

MIGRATIONS: tuple[Migration, ...] = (
    (
        1,  # the outbox
        (
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
    ),
    (
        2,  # the inbox, its dedupe horizon, dead letters, the last-known-good schedule
        (
            "CREATE TABLE inbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " message_id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, payload BLOB NOT NULL,"
            " received_at REAL NOT NULL, seq INTEGER, order_ids TEXT NOT NULL,"
            " status INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, reason TEXT,"
            " retry_at REAL, updated_at REAL NOT NULL)",
            "CREATE INDEX inbox_status ON inbox (status, id)",
            "CREATE TABLE seen_ids (message_id TEXT PRIMARY KEY, seen_at REAL NOT NULL)"
            " WITHOUT ROWID",
            "CREATE INDEX seen_ids_age ON seen_ids (seen_at)",
            "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL, reason_code TEXT NOT NULL,"
            " reason TEXT NOT NULL, received_at REAL NOT NULL, dead_at REAL NOT NULL)",
            "CREATE TABLE orders (order_id TEXT PRIMARY KEY, revision INTEGER NOT NULL,"
            " work_center TEXT NOT NULL, status TEXT NOT NULL, planned_start TEXT,"
            " order_json BLOB NOT NULL, updated_at REAL NOT NULL)",
            "CREATE INDEX orders_schedule ON orders (work_center, planned_start, order_id)",
            "PRAGMA user_version = 2",
        ),
    ),
    (
        3,  # the sent archive (``archive.py``): acknowledged rows kept a while for replay
        (
            "CREATE TABLE sent_archive (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " lane INTEGER NOT NULL, message_id TEXT NOT NULL, stream TEXT NOT NULL,"
            " seq INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,"
            " size INTEGER NOT NULL, created_at REAL NOT NULL, sent_at REAL NOT NULL)",
            "CREATE INDEX sent_archive_age ON sent_archive (sent_at)",
            "PRAGMA user_version = 3",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]
"""``PRAGMA user_version`` of a store this code writes; older stores are migrated forward."""

_PRAGMAS = (
    "PRAGMA journal_mode = WAL;"
    " PRAGMA synchronous = FULL;"
    " PRAGMA foreign_keys = ON;"
    " PRAGMA busy_timeout = 5000;"
)


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
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: Path, migrations: Sequence[Migration] = MIGRATIONS) -> Database:
        """Open (or create) the file at ``path``, owner-only, and migrate it forward."""
        with store_errors(path):
            _create_private_file(path)
            database = cls(await aiosqlite.connect(path, isolation_level=None), path)
            try:
                await database.connection.executescript(_PRAGMAS)
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
        async with self.read() as connection:
            await connection.execute("BEGIN IMMEDIATE")
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

    async def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            with store_errors(self.path):
                await self.connection.close()


@contextmanager
def store_errors(path: Path) -> Iterator[None]:
    """The one place where sqlite3 and OS errors become ``StoreError``."""
    try:
        yield
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL:
            message = f"store {path}: disk full, nothing from this call was committed ({exc})"
            raise StoreError(message) from exc
        raise StoreError(f"store {path}: {exc}") from exc
    except OSError as exc:
        raise StoreError(f"store {path}: {exc}") from exc


def _create_private_file(path: Path) -> None:
    """Create the file owner-only before SQLite does: payloads may carry secrets."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    # SQLite gives -wal and -shm the main file's mode; tighten files left by older installs too.
    for suffix in ("", "-wal", "-shm"):
        sibling = path.with_name(path.name + suffix)
        if sibling.exists():
            sibling.chmod(0o600)


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
