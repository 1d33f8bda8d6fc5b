"""Cron polls in the plant's time zone: fire times across DST changes, each wall-clock time
once; a cron endpoint's job on the agent's one scheduler; site.timezone checked."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from pydantic import ValidationError

from plantsync.agent.polling.schedule import WallClockCron
from plantsync.config.model import SiteConfig
from plantsync.sim.mes import SimulatedMes
from tests.e2e.support import eventually
from tests.mespoll.conftest import endpoint, polled

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def fire_times(trigger: CronTrigger, start: datetime, until: datetime) -> list[str]:
    """The trigger's fire times as the scheduler walks them: each next one from the last."""
    times: list[str] = []
    previous, now = None, start
    while (following := trigger.get_next_fire_time(previous, now)) is not None:
        if following >= until:
            break
        times.append(following.isoformat())
        previous, now = following, following.astimezone(UTC) + timedelta(seconds=1)
    return times


def local(day: str, timezone: tzinfo) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=timezone)


def test_shift_ends_fire_at_their_wall_clock_hours_across_both_dst_changes() -> None:
    trigger = WallClockCron.of("0 6,14,22 * * *", BERLIN)

    spring = fire_times(trigger, local("2026-03-28", BERLIN), local("2026-03-30", BERLIN))
    autumn = fire_times(trigger, local("2026-10-24", BERLIN), local("2026-10-26", BERLIN))

    assert spring == [
        "2026-03-28T06:00:00+01:00",
        "2026-03-28T14:00:00+01:00",
        "2026-03-28T22:00:00+01:00",
        "2026-03-29T06:00:00+02:00",
        "2026-03-29T14:00:00+02:00",
        "2026-03-29T22:00:00+02:00",
    ]
    assert autumn == [
        "2026-10-24T06:00:00+02:00",
        "2026-10-24T14:00:00+02:00",
        "2026-10-24T22:00:00+02:00",
        "2026-10-25T06:00:00+01:00",
        "2026-10-25T14:00:00+01:00",
        "2026-10-25T22:00:00+01:00",
    ]


def test_a_job_in_the_hour_that_repeats_at_fall_back_fires_once() -> None:
    start, until = local("2026-10-31", NEW_YORK), local("2026-11-03", NEW_YORK)

    ours = fire_times(WallClockCron.of("30 1 * * *", NEW_YORK), start, until)
    apschedulers = fire_times(CronTrigger.from_crontab("30 1 * * *", NEW_YORK), start, until)

    assert ours == [
        "2026-10-31T01:30:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]
    # What the wrapper is for: APScheduler's own trigger runs the shift report twice that night.
    assert "2026-11-01T01:30:00-05:00" in apschedulers


def test_an_hourly_job_keeps_one_run_per_wall_clock_hour_at_fall_back() -> None:
    times = fire_times(
        WallClockCron.of("0 * * * *", BERLIN),
        local("2026-10-25T01:00", BERLIN),
        local("2026-10-25T04:00", BERLIN).replace(fold=1),
    )

    assert times == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T03:00:00+01:00",
    ]


def test_a_time_skipped_at_spring_forward_fires_once_an_hour_later() -> None:
    times = fire_times(
        WallClockCron.of("30 2 * * *", BERLIN),
        local("2026-03-28", BERLIN),
        local("2026-03-31", BERLIN),
    )

    instants = [datetime.fromisoformat(time).astimezone(BERLIN).isoformat() for time in times]
    assert instants == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:30:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_site_timezone_must_be_an_iana_zone() -> None:
    assert SiteConfig(id="plant-01", timezone="Europe/Berlin").zone == BERLIN
    assert SiteConfig(id="plant-01").zone is None
    with pytest.raises(ValidationError, match="not an IANA time zone"):
        SiteConfig(id="plant-01", timezone="Mars/Olympus_Mons")


async def test_a_cron_endpoint_polls_when_its_job_on_the_shared_scheduler_fires(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    mes.add_downtime("press-1")
    config = endpoint(mes, "downtime", interval=None, cron="0 22 * * *")
    scheduler = AsyncIOScheduler(timezone=BERLIN)
    scheduler.start()
    try:
        async with polled(tmp_path / "store.db", config) as (poll, _):
            poll.schedule(scheduler, BERLIN)
            (job,) = scheduler.get_jobs()
            assert isinstance(job.trigger, WallClockCron)
            assert (job.next_run_time.hour, job.next_run_time.tzinfo) == (22, BERLIN)

            session = asyncio.create_task(poll.session(lambda: None))
            await eventually(lambda: poll.stats.records == 1, within=10)  # the catch-up poll
            mes.add_downtime("press-2")
            scheduler.modify_job(job.id, next_run_time=datetime.now(BERLIN))
            # ``polls`` counts a poll as it starts: wait for its page to be committed too
            await eventually(lambda: poll.stats.polls == 2 and poll.stats.records == 2, within=10)
            session.cancel()
            await asyncio.gather(session, return_exceptions=True)
    finally:
        scheduler.shutdown(wait=False)

    assert poll.stats.records == 2
