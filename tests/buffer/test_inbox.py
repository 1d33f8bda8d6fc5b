"""The inbox contract (``plantsync.buffer.inbox``) over the SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from plantsync.buffer.base import Lane, Record
from plantsync.buffer.inbox import DownSeqMark, InboxRow, InboxStatus, OrderState
from plantsync.buffer.store import Store
from plantsync.errors import StoreError, StoreFull
from tests.buffer.harness import ROOMY, make_record

TOPIC = "plant/p1/down/schedule"
DAY = 24 * 3600.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Stores:
    """Opens stores over one file; ``reopen`` models a restarted process."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path, self.clock = path, clock
        self._opened: list[Store] = []

    async def open(self, max_size_bytes: int = ROOMY) -> Store:
        store = await Store.open(self.path, max_size_bytes=max_size_bytes, clock=self.clock)
        self._opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self._opened:
            await store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def stores(tmp_path: Path, clock: Clock) -> AsyncIterator[Stores]:
    stores = Stores(tmp_path / "store.sqlite3", clock)
    yield stores
    await stores.close_all()


@pytest.fixture
async def store(stores: Stores) -> Store:
    return await stores.open()


async def receive(store: Store, number: int, *, seq: int | None = None) -> bool:
    """Message ``d<number>``, received at ``1000 + number``."""
    payload = f'{{"n": {number}}}'.encode()
    return await store.inbox.receive(
        f"d{number}", TOPIC, payload, received_at=1000.0 + number, seq=seq, order_ids=["o1"]
    )


def ack(number: int, payload_size: int = 100) -> Record:
    return make_record(number, Lane.BUSINESS, stream="acks", payload_size=payload_size)


def order(order_id: str, revision: int = 1, **changes: str | None) -> OrderState:
    fields: dict[str, str | None] = {"work_center": "wc1", "status": "Released"}
    fields.update(changes)
    return OrderState(
        order_id=order_id,
        revision=revision,
        work_center=fields["work_center"] or "",
        status=fields["status"] or "",
        order_json=f'{{"id": "{order_id}", "rev": {revision}}}'.encode(),
        updated_at=2000.0,
        planned_start=fields.get("planned_start"),
    )


def ids(rows: Sequence[InboxRow]) -> list[str]:
    return [row.message_id for row in rows]


async def only_row(store: Store) -> InboxRow:
    (row,) = await store.inbox.pending(10)
    return row


async def test_a_received_message_is_pending_with_everything_it_arrived_with(
    store: Store, clock: Clock
) -> None:
    assert await receive(store, 1, seq=7)

    assert await store.inbox.pending(10) == [
        InboxRow(
            row_id=1,
            message_id="d1",
            topic=TOPIC,
            payload=b'{"n": 1}',
            received_at=1001.0,
            seq=7,
            status=InboxStatus.RECEIVED,
            attempts=0,
            reason=None,
            updated_at=clock.now,
            retry_at=None,
            order_ids=("o1",),
        )
    ]


async def test_pending_is_in_arrival_order_and_at_most_limit(store: Store) -> None:
    for number in (3, 1, 2):
        await receive(store, number)

    assert ids(await store.inbox.pending(2)) == ["d3", "d1"]
    assert ids(await store.inbox.pending(10)) == ["d3", "d1", "d2"]


async def test_a_message_id_is_accepted_once_even_after_reopen(stores: Stores) -> None:
    store = await stores.open()
    assert await receive(store, 1)
    assert not await receive(store, 1)

    reopened = await stores.open()

    assert not await receive(reopened, 1)
    assert ids(await reopened.inbox.pending(10)) == ["d1"]


async def test_a_message_id_is_refused_after_it_was_settled_and_pruned(
    store: Store, clock: Clock
) -> None:
    await receive(store, 1)
    await store.inbox.settle((await only_row(store)).row_id, InboxStatus.APPLIED)
    clock.now += 8 * DAY

    assert await store.inbox.prune(older_than=clock.now - 7 * DAY) == 1
    assert not await receive(store, 1)
    assert (await store.inbox.inbox_stats()).counts[InboxStatus.APPLIED] == 0


async def test_settle_commits_status_acks_and_schedule_together(store: Store) -> None:
    await receive(store, 1)
    row = await only_row(store)

    await store.inbox.settle(
        row.row_id, InboxStatus.APPLIED, reason="ok", acks=[ack(5)], orders=[order("o1", 3)]
    )

    assert await store.inbox.pending(10) == []
    assert [item.record for item in await store.outbox.begin(10)] == [ack(5)]
    assert await store.outbox.last_sequences() == {"acks": 5}
    assert (await store.outbox.stats()).size_bytes == ack(5).size
    assert await store.inbox.order("o1") == order("o1", 3)
    assert await store.inbox.applied_revision("o1") == 3
    assert (await store.inbox.inbox_stats()).counts[InboxStatus.APPLIED] == 1


async def test_settle_that_does_not_fit_commits_nothing(stores: Stores) -> None:
    store = await stores.open(max_size_bytes=2 * ack(0).size)
    await store.outbox.add([ack(1)])
    await receive(store, 1)
    row = await only_row(store)

    with pytest.raises(StoreFull):
        await store.inbox.settle(
            row.row_id, InboxStatus.APPLIED, acks=[ack(2), ack(3)], orders=[order("o1")]
        )

    assert await only_row(store) == row
    assert await store.inbox.order("o1") is None
    assert await store.outbox.last_sequences() == {"acks": 1}
    assert (await store.outbox.stats()).size_bytes == ack(1).size


async def test_settle_evicts_telemetry_to_make_room_for_its_acks(stores: Stores) -> None:
    store = await stores.open(max_size_bytes=2 * ack(0).size)
    await store.outbox.add([make_record(1), make_record(2)])
    await receive(store, 1)

    await store.inbox.settle((await only_row(store)).row_id, InboxStatus.REJECTED, acks=[ack(3)])

    assert [item.record for item in await store.outbox.begin(10)] == [ack(3), make_record(2)]
    assert (await store.outbox.stats()).evicted_total == 1


async def test_retry_rows_come_back_when_due(store: Store, clock: Clock) -> None:
    await receive(store, 1)
    row = await only_row(store)

    await store.inbox.settle(
        row.row_id, InboxStatus.RETRY, reason="MES down", retry_at=clock.now + 30
    )
    assert await store.inbox.pending(10) == []

    clock.now += 30
    retried = await only_row(store)
    assert (retried.status, retried.attempts, retried.reason) == (InboxStatus.RETRY, 1, "MES down")


async def test_a_retry_that_is_not_due_does_not_hold_back_later_messages(
    store: Store, clock: Clock
) -> None:
    await receive(store, 1)
    await store.inbox.settle(1, InboxStatus.RETRY, retry_at=clock.now + 30)
    await receive(store, 2)

    assert ids(await store.inbox.pending(10)) == ["d2"]


@pytest.mark.parametrize(
    ("status", "retry_at", "acks", "message"),
    [
        (InboxStatus.RECEIVED, None, (), "not a settlement"),
        (InboxStatus.RETRY, None, (), "retry_at is required"),
        (InboxStatus.APPLIED, 5.0, (), "retry_at is required"),
        (InboxStatus.APPLIED, None, (make_record(1, Lane.TELEMETRY),), "business records"),
    ],
)
async def test_settle_refuses_what_is_not_a_settlement_and_changes_nothing(
    store: Store,
    status: InboxStatus,
    retry_at: float | None,
    acks: tuple[Record, ...],
    message: str,
) -> None:
    await receive(store, 1)
    row = await only_row(store)

    with pytest.raises(ValueError, match=message):
        await store.inbox.settle(row.row_id, status, retry_at=retry_at, acks=acks)

    assert await only_row(store) == row


async def test_settling_an_unknown_row_raises_lookup_error_and_commits_nothing(
    store: Store,
) -> None:
    with pytest.raises(LookupError):
        await store.inbox.settle(42, InboxStatus.APPLIED, acks=[ack(1)], orders=[order("o1")])

    assert (await store.outbox.stats()).depth == 0
    assert await store.inbox.schedule() == []


async def test_a_held_revision_waits_for_approval_then_applies(store: Store) -> None:
    await receive(store, 1)
    await receive(store, 2)
    await store.inbox.settle(2, InboxStatus.WAITING_APPROVAL, reason="frozen horizon")

    assert ids(await store.inbox.waiting_approval()) == ["d2"]
    assert ids(await store.inbox.pending(10)) == ["d1"]

    await store.inbox.settle(2, InboxStatus.APPLIED, orders=[order("o1", 2)])
    assert await store.inbox.waiting_approval() == []
    assert await store.inbox.applied_revision("o1") == 2


async def test_schedule_is_by_planned_start_and_filtered_by_work_center(store: Store) -> None:
    orders = [
        order("a", planned_start=None),
        order("b", planned_start="2025-03-02T06:00:00Z"),
        order("c", planned_start="2025-03-01T06:00:00Z"),
        order("d", planned_start="2025-03-01T07:00:00Z", work_center="wc2"),
    ]
    await receive(store, 1)

    await store.inbox.settle(1, InboxStatus.APPLIED, orders=orders)

    assert [o.order_id for o in await store.inbox.schedule()] == ["c", "d", "b", "a"]
    assert [o.order_id for o in await store.inbox.schedule("wc1")] == ["c", "b", "a"]
    assert await store.inbox.schedule("elsewhere") == []


async def test_a_later_settlement_replaces_the_order_as_last_applied(store: Store) -> None:
    for number in (1, 2):
        await receive(store, number)
    await store.inbox.settle(1, InboxStatus.APPLIED, orders=[order("o1", 1)])

    await store.inbox.settle(2, InboxStatus.APPLIED, orders=[order("o1", 2, status="Held")])

    assert await store.inbox.order("o1") == order("o1", 2, status="Held")
    assert await store.inbox.applied_revision("unknown") is None


async def test_the_down_seq_mark_is_set_with_its_records_and_survives_a_reopen(
    stores: Stores,
) -> None:
    store = await stores.open()
    assert await store.inbox.down_seq_mark() is None
    assert await store.inbox.last_down_seq() is None

    await store.inbox.mark_down_seq(DownSeqMark(5), [ack(1)])
    await store.inbox.mark_down_seq(DownSeqMark(2, epoch=1))  # a reset moves it back

    reopened = await stores.open()
    assert await reopened.inbox.down_seq_mark() == DownSeqMark(2, epoch=1)
    assert await reopened.inbox.last_down_seq() == 2
    assert [item.record for item in await reopened.outbox.begin(10)] == [ack(1)]


async def test_receiving_keeps_the_seq_with_the_row_and_leaves_the_mark_alone(
    store: Store,
) -> None:
    await receive(store, 1, seq=5)

    assert [row.seq for row in await store.inbox.pending(10)] == [5]
    assert await store.inbox.down_seq_mark() is None


async def test_a_mark_whose_records_do_not_fit_is_not_set(stores: Stores) -> None:
    store = await stores.open(max_size_bytes=2 * ack(0).size)
    await store.outbox.add([ack(1)])
    with pytest.raises(StoreFull):
        await store.inbox.mark_down_seq(DownSeqMark(7), [ack(2), ack(3)])

    assert await store.inbox.down_seq_mark() is None


async def test_inbox_stats_counts_statuses_dead_letters_and_oldest_pending_age(
    store: Store, clock: Clock
) -> None:
    for number in (1, 2, 3):
        await receive(store, number)
    await store.inbox.settle(1, InboxStatus.APPLIED)
    await store.inbox.settle(2, InboxStatus.RETRY, retry_at=clock.now + 60)
    await store.inbox.dead_letter(
        TOPIC, b"{", "malformed", "bad JSON", received_at=1.0, message_id=None
    )

    stats = await store.inbox.inbox_stats()

    assert stats.counts[InboxStatus.APPLIED] == 1
    assert (stats.counts[InboxStatus.RETRY], stats.pending) == (1, 2)
    assert stats.dead_letters == 1
    assert stats.oldest_pending_age == clock.now - 1002.0


async def test_prune_deletes_only_old_settled_rows(store: Store, clock: Clock) -> None:
    for number in (1, 2, 3, 4):
        await receive(store, number)
    await store.inbox.settle(1, InboxStatus.APPLIED)
    await store.inbox.settle(2, InboxStatus.FAILED)
    await store.inbox.settle(3, InboxStatus.WAITING_APPROVAL)
    clock.now += DAY
    await store.inbox.settle(2, InboxStatus.REJECTED)  # updated: no longer old

    assert await store.inbox.prune(older_than=clock.now - 1) == 1
    counts = (await store.inbox.inbox_stats()).counts
    assert [counts[s] for s in InboxStatus] == [1, 0, 1, 0, 1, 0]


async def test_prune_seen_ends_the_dedupe_horizon_except_for_rows_still_kept(
    store: Store, clock: Clock
) -> None:
    for number in (1, 2):
        await receive(store, number)
    await store.inbox.settle(1, InboxStatus.APPLIED)
    await store.inbox.prune(older_than=clock.now + 1)
    clock.now += 31 * DAY

    assert await store.inbox.prune_seen(older_than=clock.now - 30 * DAY) == 1
    assert await receive(store, 1)  # forgotten: accepted again
    assert not await receive(store, 2)  # its row is still in the inbox


async def test_a_closed_store_raises_store_error_from_either_view(store: Store) -> None:
    await store.outbox.close()

    with pytest.raises(StoreError):
        await store.inbox.pending(1)
    with pytest.raises(StoreError):
        await receive(store, 1)
    await store.close()  # closing again is harmless


async def test_next_retry_at_is_the_earliest_due_time_of_retry_rows(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "store.db", max_size_bytes=1 << 20)
    try:
        assert await store.inbox.next_retry_at() is None
        for number in (1, 2):
            await store.inbox.receive(f"m{number}", "t", b"{}", received_at=0.0, seq=None)
        first, second = await store.inbox.pending(10)
        await store.inbox.settle(first.row_id, InboxStatus.RETRY, retry_at=500.0)
        await store.inbox.settle(second.row_id, InboxStatus.RETRY, retry_at=200.0)
        assert await store.inbox.next_retry_at() == 200.0
        await store.inbox.settle(second.row_id, InboxStatus.APPLIED)
        assert await store.inbox.next_retry_at() == 500.0
    finally:
        await store.close()
