"""The sent archive: what the hub acknowledged is kept (bounded) and can be queued again."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from plantsync.buffer.archive import ArchivePolicy, replay
from plantsync.buffer.base import Lane, Record
from plantsync.buffer.database import Database
from plantsync.buffer.schema.migrations import MIGRATIONS, SCHEMA_VERSION
from plantsync.buffer.sqlite import SqliteOutbox
from plantsync.buffer.store import Store
from tests.buffer.harness import ROOMY, make_record

KEEP_ALL = ArchivePolicy(max_age_seconds=3600.0, max_bytes=ROOMY)


def query(path: Path, sql: str) -> list[Any]:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql).fetchall()


def message(number: int, lane: Lane = Lane.BUSINESS) -> Record:
    document = {"id": f"m{number}", "stream": "order/JO-1", "seq": number, "historical": False}
    payload = json.dumps(document, separators=(",", ":")).encode()
    return Record(f"m{number}", lane, "order/JO-1", number, "t/up", payload, 1000.0 + number)


async def sent(outbox: SqliteOutbox, records: list[Record]) -> None:
    """Add, claim and acknowledge ``records``, as the uplink does with the broker's PUBACKs."""
    await outbox.add(records)
    claimed = await outbox.begin(len(records))
    await outbox.ack([row.row_id for row in claimed])


async def test_a_version_2_store_migrates_to_3_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    database = await Database.open(path, [step for step in MIGRATIONS if step[0] <= 2])
    old = await SqliteOutbox.load(database, max_size_bytes=ROOMY)
    await old.add([make_record(1), make_record(2, Lane.BUSINESS)])
    await database.close()
    assert query(path, "PRAGMA user_version") == [(2,)]

    async with await Store.open(path, max_size_bytes=ROOMY, archive=KEEP_ALL) as store:
        claimed = await store.outbox.begin(10)
        await store.outbox.ack([row.row_id for row in claimed])

    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert [row.record.message_id for row in claimed] == ["m2", "m1"]
    assert sorted(query(path, "SELECT message_id FROM sent_archive")) == [("m1",), ("m2",)]


async def test_acknowledged_rows_move_to_the_archive_and_only_those(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await Store.open(path, max_size_bytes=ROOMY, archive=KEEP_ALL) as store:
        await store.outbox.add([message(1), message(2)])
        first, _ = await store.outbox.begin(2)
        await store.outbox.ack([first.row_id])
        stats = await store.outbox.stats()

    assert stats.depth == 1
    assert stats.size_bytes == message(2).size
    assert query(path, "SELECT message_id, seq FROM sent_archive") == [("m1", 1)]


async def test_without_an_archive_policy_nothing_is_archived(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await Store.open(path, max_size_bytes=ROOMY) as store:
        await sent(store.outbox, [message(1)])

    assert query(path, "SELECT COUNT(*) FROM sent_archive") == [(0,)]


async def test_the_archive_forgets_the_oldest_beyond_its_size_and_age(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    small = ArchivePolicy(max_age_seconds=3600.0, max_bytes=2 * message(1).size)
    async with await Store.open(path, max_size_bytes=ROOMY, archive=small) as store:
        for number in range(1, 6):
            await sent(store.outbox, [message(number)])
    assert query(path, "SELECT message_id FROM sent_archive ORDER BY id") == [("m4",), ("m5",)]

    brief = ArchivePolicy(max_age_seconds=0.2, max_bytes=ROOMY)
    async with await Store.open(path, max_size_bytes=ROOMY, archive=brief) as store:
        await asyncio.sleep(0.3)
        await sent(store.outbox, [message(6)])
    assert query(path, "SELECT message_id FROM sent_archive ORDER BY id") == [("m6",)]


async def test_replay_queues_archived_messages_again_as_historical_with_their_ids(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    progress: list[tuple[int, int]] = []
    async with await Store.open(path, max_size_bytes=ROOMY, archive=KEEP_ALL) as store:
        await sent(store.outbox, [message(1), message(2), message(3)])
        replayed = await replaying(
            path, since=0.0, max_size_bytes=ROOMY, progress=_append(progress)
        )
        claimed = await store.outbox.begin(10)

    assert replayed == (3, 3)
    assert progress[-1] == (3, 3)
    documents = [json.loads(row.record.payload) for row in claimed]
    assert [(d["id"], d["seq"], d["historical"]) for d in documents] == [
        ("m1", 1, True),
        ("m2", 2, True),
        ("m3", 3, True),
    ]
    assert [row.record.lane for row in claimed] == [Lane.BUSINESS] * 3


async def test_replay_stops_at_the_outbox_cap_and_says_how_many_fit(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    cap = 2 * message(1).size + 40  # the historical flag makes each a few bytes larger
    async with await Store.open(path, max_size_bytes=ROOMY, archive=KEEP_ALL) as store:
        await sent(store.outbox, [message(1), message(2), message(3)])
        replayed, found = await replaying(path, since=0.0, max_size_bytes=cap)

    assert (replayed, found) == (2, 3)


async def test_replay_can_take_one_stream_and_a_time(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await Store.open(path, max_size_bytes=ROOMY, archive=KEEP_ALL) as store:
        await sent(store.outbox, [message(1)])
        other = make_record(9, Lane.TELEMETRY)
        await sent(store.outbox, [other])
        later = await replaying(path, since=9e9, max_size_bytes=ROOMY)
        mine = await replaying(path, since=0.0, max_size_bytes=ROOMY, stream="order/JO-1")

    assert later == (0, 0)
    assert mine == (1, 1)


async def replaying(path: Path, **options: Any) -> tuple[int, int]:
    """``replay`` through a connection of its own, as the CLI does beside a running agent."""
    database = await Database.open(path)
    try:
        return await replay(database, **options)
    finally:
        await database.close()


def _append(progress: list[tuple[int, int]]) -> Any:
    return lambda done, total: progress.append((done, total))
