"""What only the SQLite outbox promises: a private file, a versioned schema, real durability."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from plantsync.buffer.base import Lane
from plantsync.buffer.sqlite import SCHEMA_VERSION, SqliteOutbox
from plantsync.errors import StoreError
from tests.buffer.harness import ROOMY, make_record

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "outbox.sqlite3"


@pytest.fixture
async def outbox(path: Path) -> AsyncIterator[SqliteOutbox]:
    outbox = await SqliteOutbox.open(path, max_size_bytes=ROOMY)
    yield outbox
    await outbox.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the file with plain sqlite3, as an inspection tool would."""
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql).fetchall()


async def test_database_and_wal_files_are_readable_by_the_owner_only(
    outbox: SqliteOutbox, path: Path
) -> None:
    await outbox.add([make_record(1)])

    assert mode(path) == 0o600
    assert mode(path.with_name(path.name + "-wal")) == 0o600


async def test_an_existing_world_readable_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.touch(mode=0o644)
    path.chmod(0o644)

    outbox = await SqliteOutbox.open(path, max_size_bytes=ROOMY)
    await outbox.close()

    assert mode(path) == 0o600


async def test_schema_version_and_pragmas_are_set(outbox: SqliteOutbox, path: Path) -> None:
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    assert {name for (name,) in query(path, "SELECT name FROM sqlite_master")} >= {
        "outbox",
        "outbox_claim",
        "streams",
        "meta",
    }


async def test_lane_and_status_are_stored_as_integers(outbox: SqliteOutbox, path: Path) -> None:
    await outbox.add([make_record(1, Lane.BUSINESS)])

    assert query(path, "SELECT typeof(lane), typeof(status) FROM outbox") == [
        ("integer", "integer")
    ]


async def test_rows_survive_close_and_reopen_of_the_real_file(path: Path) -> None:
    outbox = await SqliteOutbox.open(path, max_size_bytes=ROOMY)
    await outbox.add([make_record(1), make_record(2, Lane.BUSINESS)])
    await outbox.close()

    reopened = await SqliteOutbox.open(path, max_size_bytes=ROOMY)
    claimed = await reopened.begin(10)
    await reopened.close()

    assert [item.record.message_id for item in claimed] == ["m2", "m1"]


async def test_committed_rows_survive_a_process_that_dies_without_closing(path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from pathlib import Path
        from plantsync.buffer.sqlite import SqliteOutbox
        from tests.buffer.harness import make_record

        async def main():
            outbox = await SqliteOutbox.open(Path({str(path)!r}), max_size_bytes=10**7)
            await outbox.add([make_record(n) for n in range(3)])
            await outbox.begin(2)
            os._exit(0)

        asyncio.run(main())
        """
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=REPOSITORY)
    assert await asyncio.wait_for(process.wait(), timeout=30) == 0

    outbox = await SqliteOutbox.open(path, max_size_bytes=ROOMY)
    claimed = await outbox.begin(10)
    await outbox.close()

    assert [item.record.message_id for item in claimed] == ["m0", "m1", "m2"]


async def test_disk_full_raises_store_error_and_commits_nothing(
    outbox: SqliteOutbox, path: Path
) -> None:
    await outbox.add([make_record(1)])
    await _limit_pages(outbox, extra_pages=0)

    with pytest.raises(StoreError, match="disk full") as raised:
        await outbox.add([make_record(n, payload_size=2000) for n in range(2, 50)])

    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    assert (await outbox.stats()).depth == 1
    assert query(path, "SELECT message_id FROM outbox") == [("m1",)]


async def test_the_outbox_keeps_working_after_disk_full(outbox: SqliteOutbox) -> None:
    await outbox.add([make_record(1)])
    await _limit_pages(outbox, extra_pages=0)
    with pytest.raises(StoreError):
        await outbox.add([make_record(n, payload_size=2000) for n in range(2, 50)])

    await _limit_pages(outbox, extra_pages=1000)
    await outbox.add([make_record(50)])

    assert [item.record.message_id for item in await outbox.begin(10)] == ["m1", "m50"]
    assert (await outbox.stats()).size_bytes == 2 * make_record(1).size


async def test_a_store_from_a_newer_plantsync_is_refused(path: Path) -> None:
    outbox = await SqliteOutbox.open(path, max_size_bytes=ROOMY)
    await outbox.close()
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(StoreError, match="newer"):
        await SqliteOutbox.open(path, max_size_bytes=ROOMY)


async def test_a_file_that_is_not_a_database_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not a database, " * 100)

    with pytest.raises(StoreError) as raised:
        await SqliteOutbox.open(path, max_size_bytes=ROOMY)

    assert isinstance(raised.value.__cause__, sqlite3.DatabaseError)


async def test_an_unwritable_location_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")

    with pytest.raises(StoreError) as raised:
        await SqliteOutbox.open(blocker / "outbox.sqlite3", max_size_bytes=ROOMY)

    assert isinstance(raised.value.__cause__, OSError)


async def _limit_pages(outbox: SqliteOutbox, *, extra_pages: int) -> None:
    """Fault injection: cap the file at its current size (+ pages), as a full disk would.

    ``max_page_count`` is per connection, so the test reaches into the outbox's own one; the
    outbox offers no hook for this on purpose.
    """
    connection = outbox._connection
    ((page_count,),) = await connection.execute_fetchall("PRAGMA page_count")
    await connection.execute(f"PRAGMA max_page_count = {page_count + extra_pages}")
