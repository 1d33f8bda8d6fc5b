"""The outbox contract (``plantsync.buffer.base``), run over every back-end."""

from __future__ import annotations

import dataclasses

import pytest

from plantsync.buffer.base import Claimed, Lane, LaneStats, Outbox
from plantsync.config.uplink import BackfillOrder
from plantsync.errors import StoreError, StoreFull
from tests.buffer.harness import OutboxHarness, make_record, record_size

BUSINESS = Lane.BUSINESS
TELEMETRY = Lane.TELEMETRY


def ids(claimed: list[Claimed]) -> list[str]:
    return [item.record.message_id for item in claimed]


def row_ids(claimed: list[Claimed]) -> list[int]:
    return [item.row_id for item in claimed]


async def test_added_records_are_claimed_unchanged_in_insertion_order(outbox: Outbox) -> None:
    records = [make_record(n, payload_size=n) for n in (3, 1, 2)]

    await outbox.add(records)

    assert [item.record for item in await outbox.begin(10)] == records


async def test_payload_bytes_round_trip_exactly(outbox: Outbox) -> None:
    binary = dataclasses.replace(make_record(1), payload=b"\x00\xff{}\x00")

    await outbox.add([binary])

    assert (await outbox.begin(1))[0].record.payload == b"\x00\xff{}\x00"


async def test_business_lane_is_claimed_before_telemetry(outbox: Outbox) -> None:
    await outbox.add([make_record(1), make_record(2, BUSINESS), make_record(3)])
    await outbox.add([make_record(4, BUSINESS)])

    assert ids(await outbox.begin(10)) == ["m2", "m4", "m1", "m3"]


async def test_begin_claims_at_most_limit_rows_and_never_the_same_row_twice(
    outbox: Outbox,
) -> None:
    await outbox.add([make_record(n) for n in range(5)])

    first, second, third = await outbox.begin(2), await outbox.begin(2), await outbox.begin(2)

    assert (ids(first), ids(second), ids(third)) == (["m0", "m1"], ["m2", "m3"], ["m4"])
    assert await outbox.begin(2) == []


async def test_business_fills_the_limit_before_telemetry_gets_a_turn(outbox: Outbox) -> None:
    await outbox.add([make_record(1), make_record(2, BUSINESS), make_record(3, BUSINESS)])

    assert ids(await outbox.begin(2)) == ["m2", "m3"]
    assert ids(await outbox.begin(2)) == ["m1"]


async def test_empty_add_and_zero_limit_change_nothing(outbox: Outbox) -> None:
    assert await outbox.add([]) == 0
    await outbox.add([make_record(1)])

    assert await outbox.begin(0) == []
    await outbox.ack([])
    await outbox.nack([])
    assert ids(await outbox.begin(1)) == ["m1"]


async def test_acked_rows_never_come_back(harness: OutboxHarness, outbox: Outbox) -> None:
    await outbox.add([make_record(n) for n in range(3)])
    claimed = await outbox.begin(2)

    await outbox.ack(row_ids(claimed))

    assert ids(await outbox.begin(10)) == ["m2"]
    reopened = await harness.reopen()
    assert ids(await reopened.begin(10)) == ["m2"]


async def test_ack_ignores_unknown_and_repeated_ids(outbox: Outbox) -> None:
    await outbox.add([make_record(1), make_record(2)])
    claimed = await outbox.begin(1)

    await outbox.ack(row_ids(claimed))
    await outbox.ack([*row_ids(claimed), 987_654])

    assert ids(await outbox.begin(10)) == ["m2"]


async def test_nacked_rows_are_claimed_again_in_original_order(outbox: Outbox) -> None:
    await outbox.add([make_record(n) for n in range(4)])
    first = await outbox.begin(2)
    second = await outbox.begin(2)

    await outbox.nack(list(reversed(row_ids(first + second))))

    assert ids(await outbox.begin(10)) == ["m0", "m1", "m2", "m3"]


async def test_nacked_rows_queue_ahead_of_later_rows_of_their_lane(outbox: Outbox) -> None:
    await outbox.add([make_record(1), make_record(2)])
    claimed = await outbox.begin(1)
    await outbox.add([make_record(3)])

    await outbox.nack(row_ids(claimed))

    assert ids(await outbox.begin(10)) == ["m1", "m2", "m3"]


async def test_inflight_rows_return_to_ready_after_reopen(harness: OutboxHarness) -> None:
    outbox = await harness.open()
    await outbox.add([make_record(1), make_record(2, BUSINESS), make_record(3)])
    await outbox.begin(2)

    reopened = await harness.reopen()

    assert ids(await reopened.begin(10)) == ["m2", "m1", "m3"]


async def test_unclaimed_rows_and_their_content_survive_reopen(harness: OutboxHarness) -> None:
    outbox = await harness.open()
    records = [make_record(1, BUSINESS), make_record(2)]
    await outbox.add(records)

    reopened = await harness.reopen()

    assert [item.record for item in await reopened.begin(10)] == records


async def test_telemetry_is_evicted_oldest_first_and_counted(harness: OutboxHarness) -> None:
    outbox = await harness.open(max_size_bytes=3 * record_size())
    await outbox.add([make_record(n) for n in range(3)])

    dropped = await outbox.add([make_record(3), make_record(4)])

    assert dropped == 2
    assert ids(await outbox.begin(10)) == ["m2", "m3", "m4"]
    assert (await outbox.stats()).evicted_total == 2


async def test_eviction_frees_only_as_many_rows_as_needed(harness: OutboxHarness) -> None:
    outbox = await harness.open(max_size_bytes=4 * record_size())
    await outbox.add([make_record(n) for n in range(4)])

    dropped = await outbox.add([make_record(9, payload_size=50)])

    assert dropped == 1
    assert ids(await outbox.begin(10)) == ["m1", "m2", "m3", "m9"]


async def test_inflight_telemetry_is_never_evicted(harness: OutboxHarness) -> None:
    outbox = await harness.open(max_size_bytes=3 * record_size())
    await outbox.add([make_record(n) for n in range(3)])
    claimed = await outbox.begin(1)

    await outbox.add([make_record(3)])

    await outbox.nack(row_ids(claimed))
    assert ids(await outbox.begin(10)) == ["m0", "m2", "m3"]


async def test_a_returned_row_evicted_before_its_claim_leaves_its_place_to_the_next(
    harness: OutboxHarness,
) -> None:
    # Found by the state machine (test_outbox_state_machine.py): the claim after a nack came
    # back one row short when the first returned row had been evicted meanwhile.
    outbox = await harness.open(max_size_bytes=3 * record_size())
    await outbox.add([make_record(n) for n in range(3)])
    await outbox.nack(row_ids(await outbox.begin(3)))

    assert await outbox.add([make_record(3)]) == 1  # m0, returned and ready, is evicted

    assert ids(await outbox.begin(2)) == ["m1", "m2"]
    assert ids(await outbox.begin(2)) == ["m3"]


async def test_business_rows_are_never_evicted_and_raise_store_full(
    harness: OutboxHarness,
) -> None:
    outbox = await harness.open(max_size_bytes=2 * record_size())
    await outbox.add([make_record(1, BUSINESS), make_record(2, BUSINESS)])

    with pytest.raises(StoreFull):
        await outbox.add([make_record(3, BUSINESS)])

    assert await outbox.add([make_record(4)]) == 1
    assert ids(await outbox.begin(10)) == ["m1", "m2"]


async def test_store_full_commits_nothing_of_the_batch(harness: OutboxHarness) -> None:
    outbox = await harness.open(max_size_bytes=3 * record_size())
    await outbox.add([make_record(1, BUSINESS), make_record(2, BUSINESS), make_record(3)])
    before = await outbox.stats()

    with pytest.raises(StoreFull):
        await outbox.add([make_record(4), make_record(5, BUSINESS), make_record(6, BUSINESS)])

    assert await outbox.stats() == before
    assert await outbox.last_sequences() == {"stream-business": 2, "stream-telemetry": 3}
    assert ids(await outbox.begin(10)) == ["m1", "m2", "m3"]


async def test_business_rows_fit_by_evicting_telemetry(harness: OutboxHarness) -> None:
    outbox = await harness.open(max_size_bytes=3 * record_size())
    await outbox.add([make_record(1), make_record(2), make_record(3, BUSINESS)])

    dropped = await outbox.add([make_record(4, BUSINESS), make_record(5, BUSINESS)])

    assert dropped == 2
    assert ids(await outbox.begin(10)) == ["m3", "m4", "m5"]


async def test_incoming_telemetry_that_does_not_fit_is_dropped_oldest_first_and_counted(
    harness: OutboxHarness,
) -> None:
    outbox = await harness.open(max_size_bytes=3 * record_size())
    await outbox.add([make_record(1, BUSINESS)])

    dropped = await outbox.add([make_record(n) for n in range(2, 6)])

    assert dropped == 2
    assert ids(await outbox.begin(10)) == ["m1", "m4", "m5"]
    assert (await outbox.stats()).evicted_total == 2


async def test_evicted_total_survives_reopen(harness: OutboxHarness) -> None:
    outbox = await harness.open(max_size_bytes=record_size())
    await outbox.add([make_record(1), make_record(2), make_record(3)])

    reopened = await harness.reopen()

    assert (await reopened.stats()).evicted_total == 2


async def test_last_sequences_survive_ack_and_eviction(harness: OutboxHarness) -> None:
    outbox = await harness.open(max_size_bytes=2 * record_size())
    await outbox.add([make_record(1, BUSINESS, stream="acked"), make_record(2, stream="evicted")])
    await outbox.add([make_record(3, stream="kept")])  # evicts row 2
    await outbox.ack(row_ids(await outbox.begin(1)))

    reopened = await harness.reopen()

    assert ids(await reopened.begin(10)) == ["m3"]
    assert await reopened.last_sequences() == {"acked": 1, "evicted": 2, "kept": 3}


async def test_last_sequences_keep_the_highest_per_stream(outbox: Outbox) -> None:
    await outbox.add([make_record(5, stream="a"), make_record(7, stream="b")])
    await outbox.add([make_record(3, stream="a"), make_record(9, stream="a")])

    assert await outbox.last_sequences() == {"a": 9, "b": 7}


async def test_stats_count_ready_and_inflight_rows_per_lane(outbox: Outbox) -> None:
    await outbox.add([make_record(5), make_record(2, BUSINESS), make_record(7)])
    await outbox.begin(2)

    stats = await outbox.stats()

    assert stats.lanes == {
        BUSINESS: LaneStats(depth=1, oldest_created_at=1002.0),
        TELEMETRY: LaneStats(depth=2, oldest_created_at=1005.0),
    }
    assert stats.depth == 3


async def test_stats_of_an_empty_outbox_show_both_lanes_empty(harness: OutboxHarness) -> None:
    outbox = await harness.open(max_size_bytes=12_345)

    stats = await outbox.stats()

    assert stats.lanes == {BUSINESS: LaneStats(), TELEMETRY: LaneStats()}
    assert (stats.size_bytes, stats.max_size_bytes, stats.evicted_total) == (0, 12_345, 0)


async def test_stats_size_bytes_follows_add_and_ack_and_survives_reopen(
    harness: OutboxHarness,
) -> None:
    outbox = await harness.open()
    await outbox.add([make_record(1), make_record(2, payload_size=10)])
    assert (await outbox.stats()).size_bytes == record_size() + record_size(10)

    await outbox.ack(row_ids(await outbox.begin(1)))

    assert (await outbox.stats()).size_bytes == record_size(10)
    reopened = await harness.reopen()
    assert (await reopened.stats()).size_bytes == record_size(10)


async def test_stats_depth_follows_add_eviction_ack_and_expiry_and_survives_reopen(
    harness: OutboxHarness,
) -> None:
    # The SQLite back-end counts depth as rows are committed and deleted (no scan per stats).
    outbox = await harness.open(max_size_bytes=4 * record_size())
    await outbox.add([make_record(1, BUSINESS), *(make_record(n) for n in (1, 2, 3))])
    await outbox.add([make_record(4)])  # evicts telemetry 1
    await outbox.split_backlog(BackfillOrder.OLDEST_FIRST)
    claimed = await outbox.begin(2)  # business 1, telemetry 2
    await outbox.ack(row_ids(claimed))
    await outbox.add([make_record(5, created_at=9e9)])  # after the split: live, not backlog
    expired = await outbox.expire_backlog(created_before=9e9)  # telemetry 3 and 4
    depths = {lane: stats.depth for lane, stats in (await outbox.stats()).lanes.items()}

    assert expired == 2
    assert depths == {BUSINESS: 0, TELEMETRY: 1}
    reopened = await harness.reopen()
    assert {lane: s.depth for lane, s in (await reopened.stats()).lanes.items()} == depths


async def test_stats_oldest_is_the_smallest_created_at_not_the_first_row(outbox: Outbox) -> None:
    await outbox.add([make_record(1, created_at=50.0), make_record(2, created_at=20.0)])

    assert (await outbox.stats()).lanes[TELEMETRY].oldest_created_at == 20.0


async def test_a_closed_outbox_raises_store_error(outbox: Outbox) -> None:
    await outbox.close()

    with pytest.raises(StoreError):
        await outbox.add([make_record(1)])
    with pytest.raises(StoreError):
        await outbox.begin(1)
    await outbox.close()  # closing twice is harmless
