"""Each applied order keeps the correlation id of the down message that applied it, written in
the settling transaction, so a confirmation reported after a restart still names its schedule."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from plantsync.buffer.base import Lane, Record
from plantsync.buffer.database import Database
from plantsync.buffer.inbox import InboxStatus, OrderState
from plantsync.buffer.schema.migrations import MIGRATIONS, SCHEMA_VERSION
from plantsync.buffer.store import Store
from plantsync.errors import StoreFull
from tests.buffer.harness import ROOMY, make_record

TOPIC = "plantsync/v1/p1/down/schedule"


def applied(
    order_id: str, revision: int, correlation_id: str | None, message_id: str | None
) -> OrderState:
    return OrderState(
        order_id=order_id,
        revision=revision,
        work_center="wc1",
        status="Released",
        order_json=f'{{"id": "{order_id}", "rev": {revision}}}'.encode(),
        updated_at=2000.0,
        correlation_id=correlation_id,
        message_id=message_id,
    )


def ack(number: int) -> Record:
    return make_record(number, Lane.BUSINESS, stream="acks")


async def settle(store: Store, message_id: str, *orders: OrderState, acks: list[Record]) -> None:
    """Receive ``message_id`` and settle it APPLIED with ``orders``, as the downlink does."""
    await store.inbox.receive(message_id, TOPIC, b"{}", received_at=1000.0, seq=None)
    (row,) = [row for row in await store.inbox.pending(100) if row.message_id == message_id]
    await store.inbox.settle(row.row_id, InboxStatus.APPLIED, orders=orders, acks=acks)


async def test_the_correlation_of_an_applied_order_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await Store.open(path, max_size_bytes=ROOMY) as store:
        await settle(store, "d1", applied("JO-1", 1, "plan-X", "d1"), acks=[ack(1)])

    async with await Store.open(path, max_size_bytes=ROOMY) as reopened:
        correlation = await reopened.inbox.correlation_of("JO-1")
        order = await reopened.inbox.order("JO-1")
        unknown = await reopened.inbox.correlation_of("JO-never-applied")

    assert correlation == "plan-X"
    assert order == applied("JO-1", 1, "plan-X", "d1")
    assert unknown is None


async def test_the_message_that_applies_the_next_revision_brings_its_correlation(
    tmp_path: Path,
) -> None:
    async with await Store.open(tmp_path / "store.db", max_size_bytes=ROOMY) as store:
        await settle(store, "d1", applied("JO-1", 1, "plan-X", "d1"), acks=[])
        await settle(
            store,
            "d2",
            applied("JO-1", 2, "plan-Y", "d2"),
            applied("JO-2", 1, "plan-Y", "d2"),
            acks=[],
        )
        correlations = [await store.inbox.correlation_of(o) for o in ("JO-1", "JO-2")]
        schedule = await store.inbox.schedule()

    assert correlations == ["plan-Y", "plan-Y"]
    assert [(o.order_id, o.revision, o.message_id) for o in schedule] == [
        ("JO-1", 2, "d2"),
        ("JO-2", 1, "d2"),
    ]


async def test_a_settlement_that_does_not_fit_records_no_correlation(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "store.db", max_size_bytes=2 * ack(0).size) as store:
        await store.outbox.add([ack(1)])
        with pytest.raises(StoreFull):
            await settle(store, "d1", applied("JO-1", 1, "plan-X", "d1"), acks=[ack(2), ack(3)])
        correlation = await store.inbox.correlation_of("JO-1")

    assert correlation is None


async def test_orders_of_a_version_3_store_migrate_without_a_correlation(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    database = await Database.open(path, [step for step in MIGRATIONS if step[0] <= 3])
    await database.close()
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(
            "INSERT INTO orders (order_id, revision, work_center, status, planned_start,"
            " order_json, updated_at) VALUES ('JO-old', 4, 'wc1', 'Released', NULL, ?, 2000.0)",
            (b'{"id": "JO-old", "rev": 4}',),
        )
        connection.commit()

    async with await Store.open(path, max_size_bytes=ROOMY) as store:
        migrated = await store.inbox.order("JO-old")
        before = await store.inbox.correlation_of("JO-old")
        await settle(store, "d1", applied("JO-old", 5, "plan-X", "d1"), acks=[])
        after = await store.inbox.correlation_of("JO-old")
    with closing(sqlite3.connect(path)) as connection:
        ((version,),) = connection.execute("PRAGMA user_version").fetchall()

    assert version == SCHEMA_VERSION
    assert migrated is not None
    assert (migrated.revision, migrated.order_json) == (4, b'{"id": "JO-old", "rev": 4}')
    assert (migrated.correlation_id, migrated.message_id) == (None, None)
    assert before is None
    assert after == "plan-X"
