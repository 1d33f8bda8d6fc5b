"""The store's one SQLite file: schema migration, shared transactions, crash atomicity."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from plantsync.buffer.base import Lane
from plantsync.buffer.database import Database
from plantsync.buffer.inbox import InboxStatus
from plantsync.buffer.schema.migrations import MIGRATIONS, SCHEMA_VERSION
from plantsync.buffer.sqlite import SqliteOutbox
from plantsync.buffer.store import Store
from plantsync.errors import StoreError
from tests.buffer.harness import ROOMY, make_record

REPOSITORY = Path(__file__).resolve().parents[2]

VERSION_1 = """
CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, lane INTEGER NOT NULL,
    status INTEGER NOT NULL, message_id TEXT NOT NULL, stream TEXT NOT NULL,
    seq INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,
    size INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE INDEX outbox_claim ON outbox (lane, status, id);
CREATE TABLE streams (stream TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta (key, value) VALUES ('evicted_total', 7);
PRAGMA user_version = 1;
"""
"""The schema plantsync 0.1 shipped, frozen here: files in the field look like this."""


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql).fetchall()


def write_version_1_store(path: Path) -> None:
    """A version 1 file with two outbox rows, one of them claimed when the process died."""
    rows = [(make_record(1), 1), (make_record(2, Lane.BUSINESS), 0)]
    with closing(sqlite3.connect(path)) as connection:
        connection.executescript(VERSION_1)
        connection.executemany(
            "INSERT INTO outbox (lane, status, message_id, stream, seq, topic, payload, size,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (r.lane, status, r.message_id, r.stream, r.seq, r.topic, r.payload, r.size, 1.0)
                for r, status in rows
            ],
        )
        connection.execute("INSERT INTO streams VALUES ('stream-telemetry', 9)")
        connection.commit()


async def run_python(script: str) -> None:
    """Run ``script`` in a fresh interpreter that may die at any point (``os._exit``)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", textwrap.dedent(script), cwd=REPOSITORY
    )
    assert await asyncio.wait_for(process.wait(), timeout=30) == 0


async def test_a_new_store_is_private_and_at_the_current_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with await Store.open(path, max_size_bytes=ROOMY) as store:
        await store.inbox.receive("d1", "t", b"{}", received_at=1.0, seq=None)

    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)] == [(11,)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert query(path, "SELECT typeof(status) FROM inbox") == [("integer",)]


async def test_a_version_1_store_migrates_forward_keeping_its_outbox_rows(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    write_version_1_store(path)

    async with await Store.open(path, max_size_bytes=ROOMY) as store:
        claimed = await store.outbox.begin(10)
        sequences = await store.outbox.last_sequences()
        stats = await store.outbox.stats()
        accepted = await store.inbox.receive("d1", "t", b"{}", received_at=1.0, seq=4)

    assert [item.record for item in claimed] == [
        make_record(2, Lane.BUSINESS, created_at=1.0),
        make_record(1, created_at=1.0),
    ]
    assert sequences == {"stream-telemetry": 9}
    assert (stats.size_bytes, stats.evicted_total) == (2 * make_record(1).size, 7)
    assert accepted
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


async def test_a_failed_migration_commits_none_of_its_steps(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    write_version_1_store(path)
    broken = (*MIGRATIONS, (3, ("CREATE TABLE late (x)", "THIS IS NOT SQL")))

    with pytest.raises(StoreError):
        await Database.open(path, broken)

    assert query(path, "PRAGMA user_version") == [(1,)]
    assert query(path, "SELECT name FROM sqlite_master WHERE name IN ('inbox', 'late')") == []


async def test_the_outbox_opened_alone_shares_the_schema_with_the_store(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with await Store.open(path, max_size_bytes=ROOMY) as store:
        await store.inbox.receive("d1", "t", b"{}", received_at=1.0, seq=None)

    outbox = await SqliteOutbox.open(path, max_size_bytes=ROOMY)
    await outbox.add([make_record(1)])
    await outbox.close()

    async with await Store.open(path, max_size_bytes=ROOMY) as store:
        assert [row.message_id for row in await store.inbox.pending(10)] == ["d1"]
        assert (await store.outbox.stats()).depth == 1


async def test_a_committed_settlement_survives_a_process_that_dies(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    await run_python(
        f"""
        import asyncio, os
        from pathlib import Path
        from plantsync.buffer.inbox import InboxStatus
        from plantsync.buffer.store import Store
        from tests.buffer.test_inbox import ack, order

        async def main():
            store = await Store.open(Path({str(path)!r}), max_size_bytes=10**7)
            await store.inbox.receive("d1", "t", b"{{}}", received_at=1.0, seq=1)
            await store.inbox.settle(1, InboxStatus.APPLIED, acks=[ack(1)], orders=[order("o1")])
            os._exit(0)

        asyncio.run(main())
        """
    )

    async with await Store.open(path, max_size_bytes=ROOMY) as store:
        assert (await store.inbox.inbox_stats()).counts[InboxStatus.APPLIED] == 1
        assert [item.record.message_id for item in await store.outbox.begin(10)] == ["m1"]
        assert await store.inbox.applied_revision("o1") == 1


async def test_a_settlement_cut_short_before_commit_leaves_nothing_of_it(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    await run_python(
        f"""
        import asyncio, os
        from pathlib import Path
        import aiosqlite
        from plantsync.buffer.inbox import InboxStatus
        from plantsync.buffer.store import Store
        from tests.buffer.test_inbox import ack, order

        async def die(self):
            os._exit(0)  # every statement of the settlement ran; COMMIT never does

        async def main():
            store = await Store.open(Path({str(path)!r}), max_size_bytes=10**7)
            await store.inbox.receive("d1", "t", b"{{}}", received_at=1.0, seq=1)
            aiosqlite.Connection.commit = die
            await store.inbox.settle(1, InboxStatus.APPLIED, acks=[ack(1)], orders=[order("o1")])

        asyncio.run(main())
        """
    )

    async with await Store.open(path, max_size_bytes=ROOMY) as store:
        (row,) = await store.inbox.pending(10)
        assert (row.message_id, row.status, row.attempts) == ("d1", InboxStatus.RECEIVED, 0)
        assert (await store.outbox.stats()).depth == 0
        assert await store.outbox.last_sequences() == {}
        assert await store.inbox.schedule() == []


async def test_a_write_cancelled_while_its_begin_runs_leaves_no_transaction_open(
    tmp_path: Path,
) -> None:
    """aiosqlite runs BEGIN in its own thread: a task cancelled while it waits for it leaves
    the BEGIN to run anyway. The next write must not find a transaction still open ("cannot
    start a transaction within a transaction"), as the uplink did when a hub session ended."""
    database = await Database.open(tmp_path / "store.db")
    try:

        async def write_one() -> None:
            async with database.write() as transaction:
                await transaction.connection.execute("DELETE FROM outbox WHERE id < 0")

        for _ in range(20):
            cancelled = asyncio.create_task(write_one())
            await asyncio.sleep(0)  # the task now waits for BEGIN IMMEDIATE in aiosqlite's thread
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            await write_one()
            async with database.read() as connection:
                assert not connection.in_transaction
    finally:
        await database.close()
