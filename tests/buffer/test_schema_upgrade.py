"""Upgrading plantsync over a store that still holds messages: the schema migrates forward on
open, and what the previous release buffered is delivered by this one.

A "previous release" store is made with ``Database.open(path, MIGRATIONS[:n])``: exactly the
steps that release ran.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from plantsync.buffer.base import Lane
from plantsync.buffer.database import Database
from plantsync.buffer.schema.migrations import MIGRATIONS, SCHEMA_VERSION
from plantsync.buffer.sqlite import SqliteOutbox
from plantsync.errors import StoreError
from tests.buffer.harness import ROOMY, make_record


def user_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as connection:
        ((version,),) = connection.execute("PRAGMA user_version").fetchall()
    return int(version)


async def store_of_release(path: Path, schema_version: int, messages: int) -> None:
    """A store as the release with ``schema_version`` left it: ``messages`` rows, 2 claimed."""
    steps = [step for step in MIGRATIONS if step[0] <= schema_version]
    database = await Database.open(path, steps)
    outbox = await SqliteOutbox.load(database, max_size_bytes=ROOMY)
    lanes = (Lane.BUSINESS, Lane.TELEMETRY)
    await outbox.add([make_record(n, lanes[n % 2]) for n in range(1, messages + 1)])
    await outbox.begin(2)  # in flight when the old agent stopped
    await database.close()


def test_migrations_are_numbered_one_by_one_and_each_sets_its_own_version() -> None:
    versions = [version for version, _ in MIGRATIONS]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    for version, statements in MIGRATIONS:
        assert statements[-1] == f"PRAGMA user_version = {version}"
    assert MIGRATIONS[-1][0] == SCHEMA_VERSION


@pytest.mark.parametrize("old_version", [version for version, _ in MIGRATIONS[:-1]])
async def test_messages_buffered_by_an_older_release_are_delivered_after_the_upgrade(
    tmp_path: Path, old_version: int
) -> None:
    store = tmp_path / "store.db"
    await store_of_release(store, old_version, messages=10)
    assert user_version(store) == old_version

    outbox = await SqliteOutbox.open(store, max_size_bytes=ROOMY)
    try:
        claimed = await outbox.begin(100)
    finally:
        await outbox.close()

    assert user_version(store) == SCHEMA_VERSION
    ids = [item.record.message_id for item in claimed]
    business = [f"m{n}" for n in range(2, 11, 2)]
    telemetry = [f"m{n}" for n in range(1, 11, 2)]
    assert ids == business + telemetry, "every row, in-flight ones too, in lane and id order"


async def test_a_failing_migration_step_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    await store_of_release(store, 1, messages=3)
    broken = (len(MIGRATIONS) + 1, ("CREATE TABLE half_done (x)", "THIS IS NOT SQL"))
    with pytest.raises(StoreError):
        await Database.open(store, [*MIGRATIONS, broken])
    assert user_version(store) == 1
    with closing(sqlite3.connect(store)) as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
        (rows,) = connection.execute("SELECT COUNT(*) FROM outbox").fetchone()
    assert "half_done" not in tables
    assert rows == 3


async def test_a_store_written_by_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    await store_of_release(store, SCHEMA_VERSION, messages=1)
    with closing(sqlite3.connect(store)) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="written by a later plantsync"):
        await SqliteOutbox.open(store, max_size_bytes=ROOMY)
    assert user_version(store) == SCHEMA_VERSION + 1
