"""The queue both OPC UA drivers read from: bounded, drop oldest, and silence is a lost link.

No server needed: these drive ``LiveQueue`` the way asyncua's publish loop does. The stall tests
only assert lower bounds on time, so a loaded machine makes them slower, never wrong.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from plantsync.drivers.common.opcua import LiveQueue
from plantsync.errors import SourceUnavailable

QUIET = 60.0
"""A stall timeout no test reaches."""


async def test_a_full_queue_drops_the_oldest_item_and_counts_what_it_weighed() -> None:
    queue: LiveQueue[list[int]] = LiveQueue("line-1", size=3, stall_timeout=QUIET, weight=len)
    for batch in ([1, 2, 3], [4], [5, 6]):
        queue.put(batch)

    assert [await queue.next(), await queue.next()] == [[4], [5, 6]]
    assert queue.dropped == 3


async def test_the_bound_is_in_weight_so_small_batches_are_not_dropped_sooner() -> None:
    # A capped server sends ten readings a message where another sends ten thousand: the
    # queue holds as many readings either way.
    queue: LiveQueue[list[int]] = LiveQueue("line-1", size=4, stall_timeout=QUIET, weight=len)
    for value in range(4):
        queue.put([value])
    assert queue.dropped == 0
    queue.put([4, 5])
    assert queue.dropped == 2
    assert [await queue.next() for _ in range(3)] == [[2], [3], [4, 5]]
    queue.put([6, 7, 8, 9, 10])  # heavier than the bound alone: the newest is always kept
    assert await queue.next() == [6, 7, 8, 9, 10]


async def test_each_dropped_item_counts_one_unless_weighed() -> None:
    queue: LiveQueue[str] = LiveQueue("line-1", size=1, stall_timeout=QUIET)
    for item in ("a", "b", "c"):
        queue.put(item)

    assert await queue.next() == "c"
    assert queue.dropped == 2


async def test_items_received_before_a_loss_are_delivered_before_it_is_raised() -> None:
    queue: LiveQueue[str] = LiveQueue("line-1", size=10, stall_timeout=QUIET)
    queue.put("a")
    queue.put("b")
    first = SourceUnavailable("opcua line-1: subscription BadTimeout")
    queue.lost(first)
    queue.lost(SourceUnavailable("opcua line-1: closed"))  # the first loss is the one raised

    assert [await queue.next(), await queue.next()] == ["a", "b"]
    for _ in range(2):
        with pytest.raises(SourceUnavailable) as raised:
            await queue.next()
        assert raised.value is first


async def test_a_put_wakes_a_consumer_waiting_in_next() -> None:
    queue: LiveQueue[str] = LiveQueue("line-1", size=10, stall_timeout=QUIET)
    pending = asyncio.ensure_future(queue.next())
    await asyncio.sleep(0.01)
    assert not pending.done()

    queue.put("a")

    async with asyncio.timeout(5):
        assert await pending == "a"


async def test_nothing_heard_for_the_stall_timeout_is_a_lost_link() -> None:
    started = time.monotonic()
    queue: LiveQueue[str] = LiveQueue("line-1", size=10, stall_timeout=0.05, silence="data change")

    with pytest.raises(
        SourceUnavailable, match=r"^opcua line-1: no data change or keep-alive for 0\.05 s$"
    ):
        async with asyncio.timeout(5):
            await queue.next()
    assert time.monotonic() - started >= 0.05


async def test_a_keep_alive_heard_while_waiting_moves_the_stall_deadline() -> None:
    queue: LiveQueue[str] = LiveQueue("line-1", size=10, stall_timeout=0.5)
    pending = asyncio.ensure_future(queue.next())
    # This sleep ends before the stall deadline: even on a loaded machine the loop runs due
    # timers in deadline order, so heard() comes first and next() waits on.
    await asyncio.sleep(0.25)
    heard_at = time.monotonic()
    queue.heard()

    with pytest.raises(SourceUnavailable, match=r"no notification or keep-alive for 0\.5 s"):
        async with asyncio.timeout(5):
            await pending
    assert time.monotonic() - heard_at >= 0.5


async def test_a_lost_connection_is_raised_with_the_error_that_explains_it() -> None:
    queue: LiveQueue[str] = LiveQueue("line-1", size=10, stall_timeout=QUIET)
    reset = ConnectionResetError("reset by peer")

    await queue.connection_lost(reset)

    with pytest.raises(SourceUnavailable, match=r"^opcua line-1: connection lost: ") as raised:
        await queue.next()
    assert raised.value.__cause__ is reset


async def test_a_subscription_status_ends_the_link_only_when_bad() -> None:
    queue: LiveQueue[str] = LiveQueue("line-1", size=10, stall_timeout=QUIET)
    queue.status_changed(ua.StatusCode(ua.UInt32(StatusCodes.Good)))
    queue.put("a")
    assert await queue.next() == "a"

    queue.status_changed(ua.StatusCode(ua.UInt32(StatusCodes.BadTimeout)))

    with pytest.raises(SourceUnavailable, match=r"^opcua line-1: subscription BadTimeout$"):
        await queue.next()


def test_get_nowait_takes_the_oldest_item_or_says_there_is_none() -> None:
    queue: LiveQueue[str] = LiveQueue("line-1", size=10, stall_timeout=QUIET)
    queue.put("a")
    queue.put("b")

    assert queue.get_nowait() == "a"
    assert queue.get_nowait() == "b"
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
