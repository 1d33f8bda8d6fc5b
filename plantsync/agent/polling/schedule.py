"""Cron in the plant's wall-clock time, each wall-clock time once, across DST changes.

APScheduler 3's ``CronTrigger`` works in wall-clock time and so fires twice at a time in the
hour that repeats when the clocks go back (01:30 EDT, then 01:30 EST, for "30 1 * * *" in
New York): a shift report read twice, a snapshot sent twice. ``WallClockCron`` skips a fire
time whose wall-clock reading equals the previous one's, as Vixie cron does ("jobs that already
ran are not run again"). A time that does not exist when the clocks go forward (02:30 in Berlin
on the last Sunday of March) fires once, an hour later by the wall clock (03:30 CEST): the same
instant the skipped hour would have had.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from apscheduler.triggers.cron import CronTrigger


class WallClockCron(CronTrigger):  # type: ignore[misc]  # APScheduler 3 has no type hints
    """A crontab in ``timezone`` whose fire times never repeat a wall-clock reading."""

    @classmethod
    def of(cls, crontab: str, timezone: tzinfo | None) -> WallClockCron:
        """The trigger of a 5-field crontab ('minute hour day month weekday')."""
        minute, hour, day, month, day_of_week = crontab.split()
        return cls(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=day_of_week,
            timezone=timezone,
        )

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        following: datetime | None = super().get_next_fire_time(previous_fire_time, now)
        if (
            following is not None
            and previous_fire_time is not None
            and _wall(following, self.timezone) == _wall(previous_fire_time, self.timezone)
        ):
            later = (following.astimezone(UTC) + timedelta(seconds=1)).astimezone(self.timezone)
            following = super().get_next_fire_time(following, later)
        return following


def _wall(moment: datetime, timezone: tzinfo) -> datetime:
    """The wall-clock reading of ``moment`` in ``timezone``, without its offset."""
    return moment.astimezone(timezone).replace(tzinfo=None, fold=0)
