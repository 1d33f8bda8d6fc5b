"""Retention: a store of 100,000 settled messages keeps only its windows, never anything pending,
and the file shrinks; older stores are converted to incremental vacuum once.

The big store is written in one transaction over the store's own connection (executemany), so
the test takes seconds. Run with ``-s`` to see the figures:

    .venv/bin/pytest -q -s tests/buffer/test_retention.py
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from plantsync.buffer.base import Lane
from plantsync.buffer.database import Database
from plantsync.buffer.inbox import SETTLED, InboxStatus
from plantsync.buffer.inbox_sqlite import SqliteInbox
from plantsync.buffer.retention import PruneReport, RetentionPolicy, bytes_on_disk
from plantsync.buffer.schema.migrations import MIGRATIONS
from plantsync.buffer.sqlite import SqliteOutbox
from plantsync.buffer.store import Store
from tests.buffer.harness import ROOMY, make_record

DAY = 24 * 3600.0
NOW = 1_800_000_000.0
"""The prune's ``now``; every row is stamped relative to it."""
LONG_AGO = NOW - 40 * DAY
"""Older than every window of the default policy (7 d inbox, 30 d ids and dead letters)."""
LAST_WEEK = NOW - 10 * DAY
"""Older than the inbox window, within the ids' and the dead letters'."""
YESTERDAY = NOW - 1 * DAY
"""Within every window."""
POLICY = RetentionPolicy()
NO_KEYS = {"idempotency_keys": 0, "orders": 0, "poll_cursors": 0, "source_gaps": 0}
PAYLOAD = b'{"order":"' + b"x" * 400 + b'"}'

OLD_SETTLED = 100_000
MIDDLE_SETTLED = 1_000
NEW_SETTLED = 1_000
OLD_DEAD = 12_000
NEW_DEAD = 10_500
PENDING = {
    InboxStatus.RECEIVED: "pending-received",
    InboxStatus.RETRY: "pending-retry",
    InboxStatus.WAITING_APPROVAL: "pending-waiting",
}


@dataclass
class Clock:
    """The store's clock: what it stamps on rows it writes itself."""

    now: float = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[Store, Database, Clock]]:
    """A store built like ``Store.open`` builds it, with its database at hand for bulk rows."""
    clock = Clock()
    database = await Database.open(tmp_path / "store.db")
    outbox = await SqliteOutbox.load(database, max_size_bytes=ROOMY)
    store = Store(database, outbox, SqliteInbox(database, outbox, clock=clock))
    async with store:
        yield store, database, clock


def settled_rows(prefix: str, count: int, at: float) -> Iterator[tuple[object, ...]]:
    """Inbox rows settled at ``at``, in every settled status by turns."""
    for n in range(count):
        status = SETTLED[n % len(SETTLED)]
        yield (f"{prefix}-{n}", "down/schedule", PAYLOAD, at, n, "[]", status, 1, at)


def dead_rows(prefix: str, count: int, at: float) -> Iterator[tuple[object, ...]]:
    for n in range(count):
        yield (f"{prefix}-{n}", "down/schedule", PAYLOAD, "schema", "bad input", at, at)


async def add_settled(database: Database, prefix: str, count: int, at: float) -> None:
    """``count`` settled rows and their seen ids, in one transaction."""
    async with database.write() as transaction:
        connection = transaction.connection
        await connection.executemany(
            "INSERT INTO inbox (message_id, topic, payload, received_at, seq, order_ids,"
            " status, attempts, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            settled_rows(prefix, count, at),
        )
        await connection.executemany(
            "INSERT INTO seen_ids (message_id, seen_at) VALUES (?, ?)",
            ((f"{prefix}-{n}", at) for n in range(count)),
        )


async def add_dead_letters(database: Database, prefix: str, count: int, at: float) -> None:
    async with database.write() as transaction:
        await transaction.connection.executemany(
            "INSERT INTO dead_letters (message_id, topic, payload, reason_code, reason,"
            " received_at, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            dead_rows(prefix, count, at),
        )


async def add_pending(store: Store, clock: Clock) -> None:
    """One message in each status that is not settled, received and last touched long ago."""
    clock.now = LONG_AGO
    inbox = store.inbox
    for message_id in PENDING.values():
        await inbox.receive(message_id, "down/schedule", PAYLOAD, received_at=LONG_AGO, seq=None)
    rows = {row.message_id: row.row_id for row in await inbox.pending(10, due_by=LONG_AGO)}
    await inbox.settle(rows["pending-retry"], InboxStatus.RETRY, retry_at=NOW + DAY)
    await inbox.settle(rows["pending-waiting"], InboxStatus.WAITING_APPROVAL)
    clock.now = NOW


async def add_outbox(store: Store) -> None:
    """Messages not yet acknowledged by the hub, made long ago."""
    records = [make_record(n, Lane(n % 2), created_at=LONG_AGO) for n in range(1, 101)]
    await store.outbox.add(records)


def count(path: Path, sql: str) -> int:
    with closing(sqlite3.connect(path)) as connection:
        ((value,),) = connection.execute(sql).fetchall()
    return int(value)


def counts(path: Path) -> dict[str, int]:
    tables = ("inbox", "seen_ids", "dead_letters", "outbox")
    return {table: count(path, f"SELECT COUNT(*) FROM {table}") for table in tables}  # noqa: S608


def statuses(path: Path) -> dict[str, InboxStatus]:
    with closing(sqlite3.connect(path)) as connection:
        rows = connection.execute("SELECT message_id, status FROM inbox").fetchall()
    return {message_id: InboxStatus(status) for message_id, status in rows}


async def big_store(store: Store, database: Database, clock: Clock) -> None:
    await add_settled(database, "old", OLD_SETTLED, LONG_AGO)
    await add_settled(database, "middle", MIDDLE_SETTLED, LAST_WEEK)
    await add_settled(database, "new", NEW_SETTLED, YESTERDAY)
    await add_dead_letters(database, "dead-old", OLD_DEAD, LONG_AGO)
    await add_dead_letters(database, "dead-new", NEW_DEAD, YESTERDAY)
    await add_pending(store, clock)
    await add_outbox(store)


async def checkpoint(database: Database) -> None:
    """Fold the WAL into the file and truncate it."""
    async with database.read() as connection:
        await connection.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")


def show(before: dict[str, int], after: dict[str, int], report: PruneReport) -> None:
    print(f"\nrows before {before}\nrows after  {after}")
    print(
        f"file+WAL bytes before {report.bytes_before:,} after {report.bytes_after:,}"
        f" ({report.bytes_after / report.bytes_before:.1%}); prune took {report.seconds:.2f} s"
    )


# -- what is pruned and what is kept -------------------------------------------------------


async def test_100k_settled_rows_leave_only_the_windows_and_the_file_shrinks(
    parts: tuple[Store, Database, Clock],
) -> None:
    store, database, clock = parts
    started = time.monotonic()
    await big_store(store, database, clock)
    print(f"\n{OLD_SETTLED:,} + more rows written in {time.monotonic() - started:.2f} s")
    await checkpoint(database)  # the file alone, so the shrink measured is the vacuum's
    before = counts(store.path)
    file_before = store.path.stat().st_size

    report = await store.prune(POLICY, NOW)

    after = counts(store.path)
    show(before, after, report)
    print(f"store file alone: {file_before:,} -> {store.path.stat().st_size:,} bytes")
    assert report.inbox == OLD_SETTLED + MIDDLE_SETTLED
    assert report.seen_ids == OLD_SETTLED, "ids seen last week are kept for 30 days"
    assert report.dead_letters_expired == OLD_DEAD
    assert report.dead_letters_over_cap == NEW_DEAD - POLICY.max_dead_letters
    assert after == {
        "inbox": NEW_SETTLED + len(PENDING),
        "seen_ids": NEW_SETTLED + MIDDLE_SETTLED + len(PENDING),
        "dead_letters": POLICY.max_dead_letters,
        "outbox": before["outbox"],
    }
    assert report.bytes_before == file_before
    assert report.bytes_after < report.bytes_before
    assert bytes_on_disk(store.path) == report.bytes_after
    assert report.bytes_after < report.bytes_before / 5


async def test_nothing_pending_is_pruned_however_old(
    parts: tuple[Store, Database, Clock],
) -> None:
    store, _, clock = parts
    await add_pending(store, clock)
    await add_outbox(store)
    everything_gone = RetentionPolicy(0, 0, 0, max_dead_letters=1, batch_rows=1)

    report = await store.prune(everything_gone, NOW)

    assert report.removed() == {"inbox": 0, "seen_ids": 0, "dead_letters": 0, **NO_KEYS}
    assert statuses(store.path) == {message_id: s for s, message_id in PENDING.items()}
    assert count(store.path, "SELECT COUNT(*) FROM seen_ids") == len(PENDING)
    assert (await store.outbox.stats()).depth == 100


async def test_ids_of_rows_still_in_the_inbox_are_kept_past_their_window(
    parts: tuple[Store, Database, Clock],
) -> None:
    store, database, _ = parts
    await add_settled(database, "settled", 10, YESTERDAY)
    async with database.write() as transaction:  # ids first seen long before the row settled
        await transaction.connection.execute("UPDATE seen_ids SET seen_at = ?", (LONG_AGO,))

    report = await store.prune(POLICY, NOW)

    assert (report.inbox, report.seen_ids) == (0, 0)
    assert await store.inbox.receive(
        "settled-3", "down/schedule", b"{}", received_at=NOW, seq=1
    ) is (False), "a redelivery is still recognised"


async def test_the_dead_letter_cap_removes_the_oldest_first(
    parts: tuple[Store, Database, Clock],
) -> None:
    store, database, _ = parts
    await add_dead_letters(database, "dead", 25, YESTERDAY)
    policy = RetentionPolicy(max_dead_letters=10, batch_rows=4)

    report = await store.prune(policy, NOW)

    kept = [letter.message_id for letter in await store.inbox.dead_letters(100)]
    assert report.dead_letters_over_cap == 15
    assert kept == [f"dead-{n}" for n in range(24, 14, -1)]


async def test_a_second_prune_finds_nothing_and_the_run_is_recorded(
    parts: tuple[Store, Database, Clock],
) -> None:
    store, database, _ = parts
    await add_settled(database, "old", 50, LONG_AGO)
    assert await store.last_pruned_at() is None

    first = await store.prune(POLICY, NOW + 0.25)
    second = await store.prune(POLICY, NOW + 0.25)

    assert first.removed() == {"inbox": 50, "seen_ids": 50, "dead_letters": 0, **NO_KEYS}
    assert second.removed() == {"inbox": 0, "seen_ids": 0, "dead_letters": 0, **NO_KEYS}
    assert await store.last_pruned_at() == math.ceil(NOW + 0.25)


async def test_writers_get_the_store_between_batches(
    parts: tuple[Store, Database, Clock],
) -> None:
    store, database, _ = parts
    await add_settled(database, "old", 20_000, LONG_AGO)
    policy = RetentionPolicy(batch_rows=500)

    pruning = asyncio.create_task(store.prune(policy, NOW))
    await asyncio.sleep(0)  # the prune holds the lock for its first batch
    received = await store.inbox.receive("fresh", "down/schedule", b"{}", received_at=NOW, seq=1)

    left = count(store.path, "SELECT COUNT(*) FROM inbox WHERE message_id LIKE 'old-%'")
    assert received
    assert left > 0, "the receive waited for one batch, not for the whole delete"
    assert not pruning.done()
    report = await pruning
    assert report.inbox == 20_000
    assert statuses(store.path) == {"fresh": InboxStatus.RECEIVED}


# -- incremental vacuum ----------------------------------------------------------------------


def auto_vacuum(path: Path) -> int:
    return count(path, "PRAGMA auto_vacuum")


async def test_a_new_store_is_made_for_incremental_vacuum(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "store.db", max_size_bytes=ROOMY) as store:
        path = store.path

    assert auto_vacuum(path) == 2  # INCREMENTAL


def write_store_of_release_3(path: Path, rows: int) -> None:
    """A store as the releases before retention made it: auto_vacuum NONE, settled rows."""
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        for _, statements in MIGRATIONS[:3]:
            for statement in statements:
                connection.execute(statement)
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO inbox (message_id, topic, payload, received_at, seq, order_ids,"
            " status, attempts, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            settled_rows("old", rows, LONG_AGO),
        )
        connection.execute("COMMIT")


async def test_an_older_store_is_converted_once_keeping_its_rows_and_then_shrinks(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    write_store_of_release_3(path, 20_000)
    assert auto_vacuum(path) == 0  # NONE

    started = time.monotonic()
    async with await Store.open(path, max_size_bytes=ROOMY) as store:
        converted_in = time.monotonic() - started
        assert count(path, "SELECT COUNT(*) FROM inbox") == 20_000
        report = await store.prune(POLICY, NOW)

    print(
        f"\nconverted {report.bytes_before:,} bytes in {converted_in:.2f} s;"
        f" pruned to {report.bytes_after:,}"
    )
    assert auto_vacuum(path) == 2
    assert report.inbox == 20_000
    assert report.bytes_after < report.bytes_before / 5
