"""The supervisor: backoff bounds, reconnection after link errors, one log line per change."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import pytest

from plantsync.agent.supervisor import Backoff, LinkHealth, LinkState, supervise
from plantsync.errors import LinkMisconfigured, SourceUnavailable


def test_backoff_delays_stay_within_the_doubling_ceiling_and_the_cap() -> None:
    backoff = Backoff(0.5, 8.0, random.Random(1))
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    delays = [backoff.next_delay() for _ in ceilings]
    assert all(0 <= delay <= ceiling for delay, ceiling in zip(delays, ceilings, strict=True))
    assert max(delays[4:]) > 2.0, "full jitter still reaches the upper part of the range"


def test_backoff_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(0.5, 60.0, random.Random(2))
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 0.5


async def test_supervise_reconnects_after_link_errors_until_the_session_returns() -> None:
    health = LinkHealth("opcua:test")
    attempts: list[int] = []

    async def session(up: Callable[[], None]) -> None:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise SourceUnavailable("connection refused")
        up()

    async with asyncio.timeout(5):
        await supervise(health, session, Backoff(0.001, 0.01))
    assert len(attempts) == 3
    assert health.failures == 2
    assert health.connects == 1
    assert health.state is LinkState.STOPPED
    assert health.last_error == "connection refused"


async def test_a_link_failing_the_same_way_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = LinkHealth("hub")
    calls = 0

    async def session(up: Callable[[], None]) -> None:
        nonlocal calls
        calls += 1
        if calls <= 5:
            raise SourceUnavailable("connection refused")
        up()

    with caplog.at_level(logging.INFO, logger="plantsync.agent.supervisor"):
        async with asyncio.timeout(5):
            await supervise(health, session, Backoff(0.001, 0.002))
    messages = [record.getMessage() for record in caplog.records]
    assert messages.count("link hub backoff: connection refused") == 1
    assert "link hub up" in messages


async def test_a_misconfigured_link_is_marked_failed_and_retried_at_the_longest_delay() -> None:
    health = LinkHealth("opcua:bad")

    async def session(up: Callable[[], None]) -> None:
        raise LinkMisconfigured("BadNodeIdUnknown: ns=2;s=nope")

    task = asyncio.create_task(supervise(health, session, Backoff(0.001, 30.0)))
    await asyncio.sleep(0.05)
    assert health.state is LinkState.FAILED
    assert health.failures == 1, "not retried before the longest delay"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancellation_propagates_out_of_a_connected_session() -> None:
    health = LinkHealth("hub")
    entered = asyncio.Event()

    async def session(up: Callable[[], None]) -> None:
        up()
        entered.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervise(health, session, Backoff(0.001, 0.01)))
    await asyncio.wait_for(entered.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert health.state is LinkState.UP
