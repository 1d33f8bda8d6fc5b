"""One source link's session: connect, describe, then its readings into the pipeline and, beside
them in the same session (``beside.py``), its alarms, HQ's acknowledgements of them
(``acks.py``) and the history backfill of its gaps.

``gap_aware_pipeline`` builds the pipeline whose commits keep the marks and gaps of the links
that backfill (``agent/backfill/gaps.py``), loaded from the store as the last run left them."""

from __future__ import annotations

from collections.abc import Callable

from plantsync.agent.backfill.bucket import TokenBucket
from plantsync.agent.backfill.gaps import GapKeeper
from plantsync.agent.business import BusinessWriter
from plantsync.agent.pipeline import Pipeline
from plantsync.agent.sequencer import Sequencer
from plantsync.agent.sourcing.acks import AlarmAcks
from plantsync.agent.sourcing.beside import run_beside
from plantsync.agent.supervisor import LinkHealth, Session, first_completed
from plantsync.buffer.store import Store
from plantsync.config.model import AgentConfig
from plantsync.contracts import Topics
from plantsync.drivers.base import Counted, Described, Source, TagsDescribed
from plantsync.errors import LinkError, LinkMisconfigured


async def gap_aware_pipeline(
    store: Store, topics: Topics, sequencer: Sequencer, config: AgentConfig
) -> Pipeline:
    """The agent's pipeline over ``store``; its historical messages paced at
    ``[uplink].backfill_rate`` (when a number), like the outbox's backlog."""
    rate = config.uplink.backfill_rate
    gaps = GapKeeper(
        store.gaps,
        [f"opcua:{server.name}" for server in config.opcua if server.backfill != "off"],
        bucket=TokenBucket(rate) if isinstance(rate, int) else None,
    )
    await gaps.load()
    commit_batch = config.store.commit_batch
    return Pipeline(store.outbox, topics, sequencer, commit_batch=commit_batch, gaps=gaps)


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
        # Every value queued before is committed first; the first value of each tag after
        # this opens the tag's gap (agent/backfill/gaps.py).
        await pipeline.session_started(name)
        async with connect() as source:
            if isinstance(source, Described):
                health.server = dict(source.description())
            if isinstance(source, TagsDescribed):
                pipeline.describe(source.tag_metadata())
            up()
            beside = run_beside(name, source, pipeline, business, acks)
            await first_completed(readings(source), beside)

    async def readings(source: Source) -> None:
        counted = source if isinstance(source, Counted) else None
        async for batch in source.readings():
            health.touch()
            if counted is not None:
                health.counters = dict(counted.counters())
            await pipeline.submit(name, batch)

    return session
