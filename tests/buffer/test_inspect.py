"""``inspect_store``: the store file read from outside the agent, never written."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from plantsync.buffer.archive import ArchivePolicy
from plantsync.buffer.base import Lane
from plantsync.buffer.database import Database
from plantsync.buffer.inbox import InboxStatus
from plantsync.buffer.inspect import (
    ArchiveInspection,
    InboxInspection,
    LaneInspection,
    StreamInspection,
    inspect_store,
)
from plantsync.buffer.schema.migrations import MIGRATIONS, SCHEMA_VERSION
from plantsync.buffer.sqlite import SqliteOutbox
from plantsync.buffer.store import Store
from plantsync.errors import StoreError
from tests.buffer.harness import ROOMY, make_record

NOW = 5000.0
"""``make_record(n)`` is made at ``1000 + n``: its age at NOW is ``4000 - n``."""


def files(path: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of the store file and its siblings: what a reader must leave alone."""
    siblings = (path.with_name(path.name + suffix) for suffix in ("", "-wal", "-shm"))
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in siblings if p.exists()}


async def test_a_store_held_open_by_the_agent_is_read_whole_and_left_untouched(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    archive = ArchivePolicy(max_age_seconds=10**9, max_bytes=ROOMY)
    async with await Store.open(path, max_size_bytes=ROOMY, archive=archive) as store:
        business = [make_record(n, Lane.BUSINESS, stream=f"order/JO-{n % 2}") for n in (1, 2, 3)]
        await store.outbox.add([*business, make_record(4), make_record(5)])
        sent = await store.outbox.begin(1)  # m1, the oldest business row
        await store.outbox.ack([sent[0].row_id])
        for number in (1, 2):
            await store.inbox.receive(f"d{number}", "t", b"{}", received_at=1.0, seq=None)
        await store.inbox.settle(1, InboxStatus.APPLIED)
        await store.inbox.dead_letter(
            "t", b"{", "invalid-json", "bad", received_at=1.0, message_id=None
        )
        untouched = files(path)

        found = inspect_store(path, now=NOW)

        assert files(path) == untouched

    size = make_record(1).size
    assert found.path == path
    assert found.file_bytes == untouched["store.db"][0] + untouched["store.db-wal"][0]
    assert found.schema_version == SCHEMA_VERSION
    assert found.lanes == (
        LaneInspection(Lane.BUSINESS, 2, 0, 2 * size, 4000.0 - 2),
        LaneInspection(Lane.TELEMETRY, 2, 0, 2 * size, 4000.0 - 4),
    )
    assert found.messages == 4
    assert found.evicted_total == 0
    assert found.streams == (
        StreamInspection("order/JO-0", 2, 1, 2),
        StreamInspection("order/JO-1", 3, 1, 3),
        StreamInspection("stream-telemetry", 5, 2, 4),
    )
    counts = {status: 0 for status in InboxStatus} | {
        InboxStatus.RECEIVED: 1,
        InboxStatus.APPLIED: 1,
    }
    assert found.inbox == InboxInspection(counts, dead_letters=1)
    assert isinstance(found.archive, ArchiveInspection)
    assert (found.archive.messages, found.archive.size_bytes) == (1, size)


async def test_a_store_of_an_older_release_is_read_as_it_is_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    database = await Database.open(path, MIGRATIONS[:1])
    outbox = await SqliteOutbox.load(database, max_size_bytes=ROOMY)
    await outbox.add([make_record(1), make_record(2)])
    await database.close()
    with closing(sqlite3.connect(path)) as connection:
        # Releases before the in-memory cursors marked a claimed row in the file.
        connection.execute("UPDATE outbox SET status = 1 WHERE message_id = 'm2'")
        connection.commit()

    found = inspect_store(path, now=NOW)

    with closing(sqlite3.connect(path)) as connection:
        ((version,),) = connection.execute("PRAGMA user_version").fetchall()
    assert found.schema_version == version == 1
    assert found.lanes[Lane.TELEMETRY] == LaneInspection(
        Lane.TELEMETRY, 2, 1, 2 * make_record(1).size, 4000.0 - 1
    )
    assert (found.inbox, found.archive) == (None, None)


def test_a_missing_store_is_a_store_error_naming_the_file_and_is_not_created(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nowhere.db"

    with pytest.raises(StoreError, match=f"no store at {path}"):
        inspect_store(path)

    assert not path.exists()


def test_a_file_that_is_no_store_is_a_store_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"not a database, just bytes " * 200)

    with pytest.raises(StoreError, match=f"store {path}"):
        inspect_store(path)
