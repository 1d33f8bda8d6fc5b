"""One source link's session: connect, describe, then its readings into the pipeline and, beside
them in the same session (``beside.py``), its alarms, HQ's acknowledgements of them
(``acks.py``) and the history backfill of its gap."""

from __future__ import annotations

from collections.abc import Callable

from plantsync.agent.business import BusinessWriter
from plantsync.agent.pipeline import Pipeline
from plantsync.agent.sourcing.acks import AlarmAcks
from plantsync.agent.sourcing.beside import run_beside
from plantsync.agent.supervisor import LinkHealth, Session, first_completed
from plantsync.drivers.base import Counted, Described, Source, TagsDescribed
from plantsync.errors import LinkError, LinkMisconfigured


def source_session(
    health: LinkHealth,
    connect: Callable[[], Source],
    pipeline: Pipeline,
    business: BusinessWriter,
    acks: AlarmAcks,
) -> Session:
    """The session ``supervise`` runs for the source link ``health.name``."""
    name = health.name

    async def session(up: Callable[[], None]) -> None:
        try:
            await serve(up)
        except (LinkError, LinkMisconfigured) as exc:
            # HQ's acks for this server hear "pending" now, not when the link returns.
            await acks.hold(name, str(exc))
            raise

    async def serve(up: Callable[[], None]) -> None:
        since = pipeline.last_times(name)  # where this link's gap began, per tag
        async with connect() as source:
            if isinstance(source, Described):
                health.server = dict(source.description())
            if isinstance(source, TagsDescribed):
                pipeline.describe(source.tag_metadata())
            up()
            beside = run_beside(name, source, pipeline, business, since, acks)
            await first_completed(readings(source), beside)

    async def readings(source: Source) -> None:
        counted = source if isinstance(source, Counted) else None
        async for batch in source.readings():
            health.touch()
            if counted is not None:
                health.counters = dict(counted.counters())
            await pipeline.submit(name, batch)

    return session
