"""The backlog of an outage (``Outbox.split_backlog``), run over every back-end: live rows
first, the backlog after them marked historical, in either order, bounded, cut off, evicted."""

from __future__ import annotations

from plantsync.buffer.base import Claimed, Lane, Outbox
from plantsync.config.uplink import BackfillOrder
from tests.buffer.harness import OutboxHarness, make_record, record_size

BUSINESS = Lane.BUSINESS
OLDEST, NEWEST = BackfillOrder.OLDEST_FIRST, BackfillOrder.NEWEST_FIRST


def lines(claimed: list[Claimed]) -> list[tuple[str, bool]]:
    return [(item.record.message_id, item.historical) for item in claimed]


async def test_live_rows_and_business_go_before_the_backlog_which_is_historical(
    outbox: Outbox,
) -> None:
    await outbox.add([make_record(n) for n in (1, 2, 3)])
    assert await outbox.split_backlog(OLDEST) == 3
    await outbox.add([make_record(4), make_record(5, BUSINESS), make_record(6)])

    claimed = await outbox.begin(10)

    assert lines(claimed) == [
        ("m5", False),
        ("m4", False),
        ("m6", False),
        ("m1", True),
        ("m2", True),
        ("m3", True),
    ]


async def test_newest_first_serves_the_backlog_from_its_end(outbox: Outbox) -> None:
    await outbox.add([make_record(n) for n in (1, 2, 3, 4)])
    await outbox.split_backlog(NEWEST)

    first = await outbox.begin(2)
    await outbox.add([make_record(5)])
    second = await outbox.begin(10)

    assert lines(first) == [("m4", True), ("m3", True)]
    assert lines(second) == [("m5", False), ("m2", True), ("m1", True)]


async def test_backfill_bounds_the_backlog_rows_of_one_claim_not_the_live_ones(
    outbox: Outbox,
) -> None:
    await outbox.add([make_record(n) for n in range(1, 6)])
    await outbox.split_backlog(OLDEST)
    await outbox.add([make_record(6), make_record(7, BUSINESS)])

    claimed = await outbox.begin(10, backfill=2)
    nothing = await outbox.begin(10, backfill=0)
    rest = await outbox.begin(10)

    assert lines(claimed) == [("m7", False), ("m6", False), ("m1", True), ("m2", True)]
    assert nothing == []
    assert lines(rest) == [("m3", True), ("m4", True), ("m5", True)]


async def test_expired_backlog_telemetry_is_dropped_and_counted_never_business_or_live(
    outbox: Outbox,
) -> None:
    old = [make_record(n, created_at=100.0 + n) for n in (1, 2)]
    await outbox.add([*old, make_record(3, BUSINESS, created_at=101.0), make_record(4)])
    await outbox.split_backlog(OLDEST)
    await outbox.add([make_record(5, created_at=50.0)])  # live, however old it says it is

    expired = await outbox.expire_backlog(created_before=500.0)

    assert expired == 2
    assert lines(await outbox.begin(10)) == [("m3", False), ("m5", False), ("m4", True)]
    assert (await outbox.stats()).evicted_total == 2


async def test_claimed_backlog_rows_are_not_expired(outbox: Outbox) -> None:
    await outbox.add([make_record(n, created_at=100.0) for n in (1, 2, 3)])
    await outbox.split_backlog(OLDEST)
    claimed = await outbox.begin(1)

    assert await outbox.expire_backlog(created_before=500.0) == 2

    await outbox.ack([item.row_id for item in claimed])
    assert await outbox.begin(10) == []


async def test_eviction_at_the_cap_takes_the_oldest_unclaimed_backlog_row(
    harness: OutboxHarness,
) -> None:
    outbox = await harness.open(max_size_bytes=4 * record_size())
    await outbox.add([make_record(n) for n in (1, 2, 3, 4)])
    await outbox.split_backlog(NEWEST)
    in_flight = await outbox.begin(1)  # m4

    assert await outbox.add([make_record(5)]) == 1  # m1 goes: the oldest not handed out

    assert lines(in_flight) == [("m4", True)]
    assert lines(await outbox.begin(10)) == [("m5", False), ("m3", True), ("m2", True)]


async def test_rows_not_acknowledged_in_one_session_are_backlog_in_the_next(
    outbox: Outbox,
) -> None:
    await outbox.add([make_record(1)])
    await outbox.split_backlog(OLDEST)
    await outbox.add([make_record(2)])
    sent = await outbox.begin(10)
    await outbox.nack([item.row_id for item in sent])  # the link dropped

    assert await outbox.split_backlog(OLDEST) == 2
    assert lines(await outbox.begin(10)) == [("m1", True), ("m2", True)]
