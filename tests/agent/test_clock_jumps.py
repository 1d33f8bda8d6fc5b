"""A step of the wall clock (NTP correcting hours of drift, an operator setting the time) neither
stalls nor storms anything: durations are measured on the monotonic clock, and what must be
stored as a Unix time is read so that a step cannot hold work back.

Each test steps a wall clock handed in at the seam the code offers (``clock``/``wall_clock``).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from plantsync.agent.downlink import Downlink
from plantsync.agent.policy import SchedulePolicy
from plantsync.agent.sequencer import Sequencer
from plantsync.agent.service import every
from plantsync.agent.supervisor import LinkHealth, LinkState
from plantsync.buffer.inbox import InboxStatus
from plantsync.buffer.store import Store
from plantsync.contracts import Topics
from plantsync.drivers.base import OrderChange, PlantVerdict
from plantsync.drivers.localschedule import LocalScheduleSink
from plantsync.errors import SourceUnavailable
from tests.contracts.examples import SITE, down_message

HOURS = 3600.0
TOPICS = Topics("plantsync/v1", SITE)
DOWN_TOPIC = f"plantsync/v1/{SITE}/down/schedule"


class SteppingClock:
    """A clock that runs with real time and that a test can step forward or back."""

    def __init__(self, base: float | None = None) -> None:
        self._base = time.time() if base is None else base
        self._started = time.monotonic()
        self.offset = 0.0

    def __call__(self) -> float:
        return self._base + (time.monotonic() - self._started) + self.offset

    def step(self, seconds: float) -> None:
        self.offset += seconds


# ---- link health: "connected, but nothing flows" ---------------------------------------------


def test_a_forward_wall_clock_step_does_not_make_a_busy_link_look_idle() -> None:
    wall = SteppingClock()
    health = LinkHealth("hub", wall_clock=wall)
    health.transition(LinkState.UP)
    health.touch()

    wall.step(+3 * HOURS)

    idle = health.seconds_since_activity()
    assert idle is not None
    assert idle < 1.0
    assert health.seconds_in_state() < 1.0


def test_a_backward_wall_clock_step_does_not_hide_a_stalled_link() -> None:
    wall, ticks = SteppingClock(), SteppingClock(base=1000.0)
    health = LinkHealth("hub", clock=ticks, wall_clock=wall)
    health.transition(LinkState.UP)
    health.touch()

    wall.step(-10 * 60)
    ticks.step(+300)  # five minutes pass without an exchange

    idle = health.seconds_since_activity()
    assert idle is not None
    assert idle >= 300


# ---- the periodic snapshot ---------------------------------------------------------------------


async def test_periodic_snapshots_keep_their_interval_while_the_wall_clock_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_time = time.time
    steps = iter([+3 * HOURS, -10 * 60] * 1000)
    monkeypatch.setattr(time, "time", lambda: real_time() + next(steps))
    runs: list[float] = []

    async def snapshot() -> None:
        runs.append(time.monotonic())

    task = asyncio.create_task(every(0.05, snapshot))
    await asyncio.sleep(0.53)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert 8 <= len(runs) <= 11  # one per interval: no stall, no burst of "missed" runs


# ---- the downlink's retries of an unreachable plant system -------------------------------------


class FlakyPlant(LocalScheduleSink):
    """A plant system that is unreachable for its first ``failures`` calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    @property
    def name(self) -> str:
        return "flaky"

    async def apply(self, change: OrderChange) -> PlantVerdict:
        self.calls += 1
        if self.calls <= self.failures:
            raise SourceUnavailable("the MES does not answer")
        return PlantVerdict(applied=True)


async def _downlink(path: Path, wall: SteppingClock, delays: tuple[float, float]) -> Downlink:
    store = await Store.open(path, max_size_bytes=1 << 24, clock=wall)
    return Downlink(
        store,
        TOPICS,
        Sequencer({}),
        policy=SchedulePolicy(timedelta(0), Decimal(10**6)),
        outbox_changed=asyncio.Event(),
        retry_delays=delays,
        clock=wall,
    )


async def _retrying(downlink: Downlink, plant: FlakyPlant) -> asyncio.Task[None]:
    await downlink.receive(DOWN_TOPIC, json.dumps(down_message("schedule.release")).encode())
    runner = asyncio.create_task(downlink.run(plant, LinkHealth("plant")))
    async with asyncio.timeout(5):
        while plant.calls < 1:  # noqa: ASYNC110 - the sink is polled
            await asyncio.sleep(0.01)
    return runner


async def test_a_retry_scheduled_before_the_clock_stepped_back_is_not_held_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(random.Random, "uniform", lambda _, low, high: high)  # no jitter
    wall = SteppingClock()
    downlink = await _downlink(tmp_path / "store.db", wall, delays=(1.0, 2.0))
    plant = FlakyPlant(failures=1)
    runner = await _retrying(downlink, plant)

    wall.step(-10 * 60)  # the retry, due in 1 s, now looks due in 10 min

    async with asyncio.timeout(4):
        while (await downlink._store.inbox.inbox_stats()).pending:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    runner.cancel()
    stats = await downlink._store.inbox.inbox_stats()
    await downlink._store.close()
    assert plant.calls == 2
    assert stats.counts[InboxStatus.APPLIED] == 1


async def test_a_forward_step_makes_a_waiting_retry_due_once_not_a_storm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(random.Random, "uniform", lambda _, low, high: high)  # no jitter
    wall = SteppingClock()
    downlink = await _downlink(tmp_path / "store.db", wall, delays=(5.0, 10.0))
    plant = FlakyPlant(failures=100)
    runner = await _retrying(downlink, plant)

    wall.step(+3 * HOURS)
    await asyncio.sleep(1.5)
    runner.cancel()
    await downlink._store.close()

    assert plant.calls == 2  # due at once after the step, then the next delay from the new now
