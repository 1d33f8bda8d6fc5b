"""Housekeeping: the retention job fires through APScheduler on its cron schedule, a run missed
while stopped runs once at start, a failing prune never ends it, and cancelling stops it.

Nothing waits for a wall-clock minute: the scheduler fires "now" either because the store's
last prune is older than the last fire time (the missed run) or through ``run_now``, which sets
the job's next run time; both go through the scheduler's own machinery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from plantsync.agent.housekeeping import Housekeeping, retention_policy
from plantsync.buffer.inbox import InboxStatus
from plantsync.buffer.retention import PruneReport, RetentionPolicy
from plantsync.buffer.store import Store
from plantsync.config.model import StoreConfig
from plantsync.errors import StoreDiskFull

DAY = 24 * 3600.0
NIGHTLY = "30 3 * * *"
POLICY = RetentionPolicy()


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``condition``: housekeeping's counters have no event to wait on."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the stats are polled by design
            await asyncio.sleep(0.01)


def next_half_past_three(zone: tzinfo) -> datetime:
    """03:30 today in ``zone`` if still ahead, else tomorrow's."""
    now = datetime.now(zone)
    today = now.replace(hour=3, minute=30, second=0, microsecond=0)
    return today if today > now else today + timedelta(days=1)


@asynccontextmanager
async def running(housekeeping: Housekeeping) -> AsyncIterator[asyncio.Task[None]]:
    """``housekeeping.run()`` as a task for the block, cancelled after it."""
    task = asyncio.create_task(housekeeping.run(), name="housekeeping")
    try:
        await eventually(lambda: housekeeping.running or task.done())
        yield task
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def store_with_old_messages(path: Path, count: int, days_ago: float = 40) -> Store:
    """A store holding ``count`` messages applied ``days_ago``, by the inbox's own calls."""
    stamp = [time.time() - days_ago * DAY]
    store = await Store.open(path, max_size_bytes=10_000_000, clock=lambda: stamp[0])
    for n in range(count):
        await store.inbox.receive(f"m{n}", "down", b"{}", received_at=stamp[0], seq=n)
    for row in await store.inbox.pending(count):
        await store.inbox.settle(row.row_id, InboxStatus.APPLIED)
    stamp[0] = float("inf")  # the test must not depend on the store's clock any more
    return store


async def inbox_count(store: Store) -> int:
    return sum((await store.inbox.inbox_stats()).counts.values())


class FlakyStore:
    """A store whose prunes raise the given errors in turn, then succeed; never pruned
    since ``last_pruned_at``."""

    def __init__(self, errors: list[BaseException], last_pruned_at: float | None) -> None:
        self._errors = errors
        self._last = last_pruned_at
        self.calls = 0

    async def prune(self, policy: RetentionPolicy, now: float) -> PruneReport:
        self.calls += 1
        if self._errors:
            raise self._errors.pop(0)
        return PruneReport(1, 2, 3, 0, bytes_before=2_000_000, bytes_after=1_000_000, seconds=0.1)

    async def last_pruned_at(self) -> float | None:
        return self._last


class BlockingStore:
    """A store whose prune waits until cancelled, and says so."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def prune(self, policy: RetentionPolicy, now: float) -> PruneReport:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("unreachable")

    async def last_pruned_at(self) -> float | None:
        return None


# -- the schedule ----------------------------------------------------------------------------


async def test_the_next_run_is_the_next_cron_time_in_the_zone_given(tmp_path: Path) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    async with await Store.open(tmp_path / "store.db", max_size_bytes=10_000_000) as store:
        housekeeping = Housekeeping(store, POLICY, NIGHTLY, timezone=berlin)
        assert housekeeping.next_run_at is None

        async with running(housekeeping):
            assert housekeeping.next_run_at == next_half_past_three(berlin)
            assert housekeeping.stats.runs == 0, "a store never pruned waits for 03:30"


async def test_a_run_missed_while_stopped_runs_once_at_start_through_the_scheduler(
    tmp_path: Path,
) -> None:
    # Applied 8 days ago: within the 7-day window three nights ago, beyond it now.
    async with await store_with_old_messages(tmp_path / "store.db", 5, days_ago=8) as store:
        await store.prune(POLICY, time.time() - 3 * DAY)  # three nights ago; then stopped
        assert await inbox_count(store) == 5
        housekeeping = Housekeeping(store, POLICY, NIGHTLY, timezone=UTC)

        async with running(housekeeping):
            await eventually(lambda: housekeeping.stats.runs == 1)
            assert await inbox_count(store) == 0
            assert housekeeping.next_run_at == next_half_past_three(UTC)
            await asyncio.sleep(0.2)
            assert housekeeping.stats.runs == 1, "three missed nights run once, not three times"

    report = housekeeping.stats.last_report
    assert report is not None
    assert report.inbox == 5
    assert housekeeping.stats.removed_total["inbox"] == 5


async def test_run_now_fires_the_job_through_the_scheduler_and_keeps_the_cron(
    tmp_path: Path,
) -> None:
    async with await store_with_old_messages(tmp_path / "store.db", 3) as store:
        housekeeping = Housekeeping(store, POLICY, NIGHTLY, timezone=UTC)
        assert not housekeeping.run_now(), "nothing fires before run() starts the scheduler"

        async with running(housekeeping):
            assert housekeeping.run_now()
            await eventually(lambda: housekeeping.stats.runs == 1)
            assert await inbox_count(store) == 0
            assert housekeeping.next_run_at == next_half_past_three(UTC)
            assert await store.last_pruned_at() == pytest.approx(time.time(), abs=5)


# -- failures and cancellation ---------------------------------------------------------------


async def test_a_failing_prune_is_counted_and_run_goes_on_to_the_next_one() -> None:
    store = FlakyStore(
        [StoreDiskFull("store x: disk full"), ValueError("a bug")],
        last_pruned_at=time.time() - 2 * DAY,
    )
    housekeeping = Housekeeping(store, POLICY, NIGHTLY, timezone=UTC)

    async with running(housekeeping) as task:
        await eventually(lambda: housekeeping.stats.failures == 1)  # the missed run
        assert housekeeping.stats.last_error == "store x: disk full"
        housekeeping.run_now()
        await eventually(lambda: housekeeping.stats.failures == 2)
        assert not task.done()
        housekeeping.run_now()
        await eventually(lambda: housekeeping.stats.runs == 1)

    assert store.calls == 3
    assert housekeeping.stats.last_error is None
    assert housekeeping.stats.removed_total == {
        "inbox": 1,
        "seen_ids": 2,
        "dead_letters": 3,
        "idempotency_keys": 0,
        "orders": 0,
        "poll_cursors": 0,
        "source_gaps": 0,
    }


async def test_cancelling_run_cancels_the_prune_in_progress_and_stops_the_scheduler() -> None:
    store = BlockingStore()
    housekeeping = Housekeeping(store, POLICY, NIGHTLY, timezone=UTC)
    task = asyncio.create_task(housekeeping.run())
    await eventually(lambda: housekeeping.running)
    housekeeping.run_now()
    async with asyncio.timeout(5):
        await store.started.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)  # AsyncIOScheduler.shutdown runs on the loop's next turn

    assert store.cancelled
    assert not housekeeping.running
    assert housekeeping.stats.failures == 0, "a cancellation is not a failed prune"


async def test_on_the_agents_shared_scheduler_its_job_comes_and_goes_but_the_scheduler_stays(
    tmp_path: Path,
) -> None:
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start()
    try:
        async with await store_with_old_messages(tmp_path / "store.db", 2) as store:
            housekeeping = Housekeeping(store, POLICY, NIGHTLY, timezone=UTC, scheduler=scheduler)
            async with running(housekeeping):
                assert [job.id for job in scheduler.get_jobs()] == ["retention"]
                assert housekeeping.run_now()
                await eventually(lambda: housekeeping.stats.runs == 1)
            await asyncio.sleep(0)

            assert scheduler.running, "the agent stops the shared scheduler, not housekeeping"
            assert scheduler.get_jobs() == []
            assert await inbox_count(store) == 0
    finally:
        scheduler.shutdown(wait=False)


# -- from the config -------------------------------------------------------------------------


def test_the_policy_comes_from_the_store_section() -> None:
    config = StoreConfig.model_validate(
        {
            "keep_processed": "2d",
            "keep_seen_ids": "14d",
            "keep_dead_letters": "12h",
            "max_dead_letters": 50,
        }
    )

    policy = retention_policy(config)

    assert policy.keep_processed_seconds == 2 * DAY
    assert policy.keep_seen_ids_seconds == 14 * DAY
    assert policy.keep_dead_letters_seconds == DAY / 2
    assert policy.max_dead_letters == 50
