"""Housekeeping: the store's retention, run on a wall-clock schedule (``[store]`` in the config).

    Housekeeping(store, policy, cron).run()
      AsyncIOScheduler ── WallClockCron.of(cron), local time ──▶ due.set()
      run's own loop:  await due ─▶ store.prune(policy, now) ─▶ one INFO line, ``stats``
      cancelled:       the scheduler is shut down, the CancelledError goes on

A wall clock here, where every interval elsewhere is monotonic: pruning belongs to a quiet
hour of the plant's night ("30 3 * * *"), not to "every 24 h since the last start".

The scheduler only signals; the prune runs in ``run``'s own task. So runs never overlap,
cancelling ``run`` cancels a prune in progress (the batch in flight rolls back, finished
batches stay done), and APScheduler never sees the CancelledError (its executor would log it
as a failed job and swallow it).

Missed runs, set deliberately: ``coalesce=True`` and ``misfire_grace_time=None``. A server
that slept or stepped its clock across 03:30 runs the job once when it wakes, however many
nights it missed, and however late. A run missed while the agent was not running at all is
found from ``store.last_pruned_at()``: the first fire time after it, when already past,
becomes the job's first run time, and the scheduler runs it (once) at start.

Failures never end ``run``: a ``StoreError`` (disk full, file locked) is logged as a WARNING
and counted, and the next scheduled time tries again; anything else is a bug, logged with its
traceback, counted, and the agent goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Protocol

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.util import undefined

from plantsync.agent.polling.schedule import WallClockCron
from plantsync.buffer.retention import PruneReport, RetentionPolicy
from plantsync.config.model import StoreConfig
from plantsync.errors import StoreError

log = logging.getLogger(__name__)

_JOB = "retention"


class Prunable(Protocol):
    """What housekeeping needs of the store (``buffer.Store`` is one)."""

    async def prune(self, policy: RetentionPolicy, now: float) -> PruneReport:
        """Delete what ``policy`` no longer keeps at ``now``; never anything pending."""
        ...

    async def last_pruned_at(self) -> float | None:
        """The ``now`` of the last completed ``prune``, or None if none ever did."""
        ...


@dataclass
class HousekeepingStats:
    """What the status page and metrics show about retention."""

    runs: int = 0
    """Prunes that completed."""
    failures: int = 0
    """Prunes that raised; the next scheduled one tries again."""
    last_run_at: float | None = None
    """Unix time the last prune started, whichever way it ended."""
    last_report: PruneReport | None = None
    """The last completed prune."""
    last_error: str | None = None
    """Why the last prune failed; None once one completes."""
    removed_total: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("inbox", "seen_ids", "dead_letters", "idempotency_keys", "source_gaps"), 0
        )
    )
    """Rows removed per table since start."""

    def completed(self, report: PruneReport) -> None:
        self.runs += 1
        self.last_report, self.last_error = report, None
        for table, rows in report.removed().items():
            self.removed_total[table] = self.removed_total.get(table, 0) + rows

    def failed(self, error: BaseException) -> None:
        self.failures += 1
        self.last_error = str(error) or type(error).__name__


def retention_policy(store: StoreConfig, polled: Iterable[str] = ()) -> RetentionPolicy:
    """The retention windows and cap from ``[store]``; ``polled``: the endpoints configured
    now (``PollEndpoint.name``), whose cursors stay whatever their age."""
    return RetentionPolicy(
        keep_processed_seconds=store.keep_processed.total_seconds(),
        keep_seen_ids_seconds=store.keep_seen_ids.total_seconds(),
        keep_dead_letters_seconds=store.keep_dead_letters.total_seconds(),
        max_dead_letters=store.max_dead_letters,
        keep_idempotency_keys_seconds=store.keep_idempotency_keys.total_seconds(),
        keep_closed_orders_seconds=store.keep_closed_orders.total_seconds(),
        keep_poll_cursors_seconds=store.keep_poll_cursors.total_seconds(),
        polled_endpoints=frozenset(polled),
    )


class Housekeeping:
    """Prunes ``store`` by ``policy`` at every fire time of ``cron`` until ``run`` is cancelled.

    ``cron`` is a 5-field crontab ("30 3 * * *"), checked by the config
    (``store.retention_schedule``; APScheduler 3 numbers weekdays from Monday, so the config
    takes them by name only). ``timezone`` defaults to the server's local time zone; ``clock``
    gives the ``now`` the retention windows are measured from. ``scheduler`` is the agent's one
    scheduler of wall-clock jobs (shared with the cron polls of ``agent/polling``); without it
    ``run`` starts and stops a scheduler of its own.
    """

    def __init__(
        self,
        store: Prunable,
        policy: RetentionPolicy,
        cron: str,
        *,
        timezone: tzinfo | None = None,
        clock: Callable[[], float] = time.time,
        scheduler: AsyncIOScheduler | None = None,
    ) -> None:
        self._store = store
        self._policy = policy
        # Each wall-clock time once: no second prune in the hour that repeats at a DST change.
        self._trigger = WallClockCron.of(cron, timezone)
        self._clock = clock
        self._due = asyncio.Event()
        self._scheduler: AsyncIOScheduler | None = None
        self._shared = scheduler
        """The agent's one scheduler of wall-clock jobs, started and stopped by the agent."""
        self.stats = HousekeepingStats()

    @property
    def running(self) -> bool:
        """True while the scheduler runs (from ``run``'s start until it is cancelled)."""
        return self._scheduler is not None and bool(self._scheduler.running)

    @property
    def next_run_at(self) -> datetime | None:
        """When the scheduler runs the next prune; None while it is not running."""
        if self._scheduler is None or not self.running:
            return None
        job = self._scheduler.get_job(_JOB)
        next_run: datetime | None = None if job is None else job.next_run_time
        return next_run

    async def run(self) -> None:
        """Schedule the prunes and run each one when due, until cancelled."""
        missed = await self._missed_run()
        scheduler = self._shared or AsyncIOScheduler(timezone=self._trigger.timezone)
        scheduler.add_job(
            self._fire,
            self._trigger,
            id=_JOB,
            name="retention",
            coalesce=True,
            misfire_grace_time=None,
            max_instances=1,
            next_run_time=missed or undefined,
            replace_existing=True,
        )
        if self._shared is None:
            scheduler.start()
        self._scheduler = scheduler
        log.info("retention: next run at %s", self.next_run_at)
        try:
            while True:
                await self._due.wait()
                self._due.clear()
                await self.prune_once()
        finally:
            if self._shared is None:
                scheduler.shutdown(wait=False)
            elif scheduler.running:
                with contextlib.suppress(JobLookupError):
                    scheduler.remove_job(_JOB)

    def run_now(self) -> bool:
        """Have the scheduler fire the job at once (an operator's "prune now"); the cron's
        fire times after it stay as they were. False, and nothing fires, unless ``run`` runs."""
        if self._scheduler is None or not self.running:
            return False
        self._scheduler.modify_job(_JOB, next_run_time=datetime.now(self._trigger.timezone))
        return True

    async def prune_once(self) -> PruneReport | None:
        """One prune now; None when it failed (logged and counted in ``stats``)."""
        now = self._clock()
        self.stats.last_run_at = now
        try:
            report = await self._store.prune(self._policy, now)
        except StoreError as exc:
            self.stats.failed(exc)
            log.warning("retention: pruning failed, the next scheduled run tries again: %s", exc)
            return None
        except Exception as exc:
            self.stats.failed(exc)
            log.exception("retention: pruning failed on a bug; the agent goes on")
            return None
        self.stats.completed(report)
        log.info(
            "retention: removed %d inbox rows, %d seen ids, %d dead letters (%d over the cap),"
            " %d idempotency keys in %.1f s; store %.1f MB -> %.1f MB",
            report.inbox,
            report.seen_ids,
            report.dead_letters,
            report.dead_letters_over_cap,
            report.idempotency_keys,
            report.seconds,
            report.bytes_before / 1e6,
            report.bytes_after / 1e6,
        )
        return report

    async def _fire(self) -> None:
        """The scheduled job: wake ``run`` (a coroutine, so it runs on the event loop)."""
        self._due.set()

    async def _missed_run(self) -> datetime | None:
        """The first fire time after the last completed prune, when it is already past."""
        try:
            last = await self._store.last_pruned_at()
        except StoreError as exc:
            log.warning("retention: cannot tell when the store was last pruned: %s", exc)
            return None
        if last is None:
            return None
        timezone = self._trigger.timezone
        # get_next_fire_time returns a time at or after the one given: one second later is
        # strictly after the last run.
        after = datetime.fromtimestamp(last + 1, timezone)
        due: datetime | None = self._trigger.get_next_fire_time(None, after)
        if due is None or due > datetime.fromtimestamp(self._clock(), timezone):
            return None
        log.info("retention: the run due at %s was missed while stopped; running it now", due)
        return due
