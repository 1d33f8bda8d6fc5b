"""The agent: runs its core over the parts the composition root gives it, and stops in order.

    OPC UA server ─▶ source link (supervised) ─submit─▶ Pipeline ─add─▶ outbox ┐
    OPC UA server ─▶ source link (supervised) ─┘                               │ (SQLite store:
                                                                               │  one file, one
    MQTT hub ◀──── hub link (supervised, persistent session) ◀── Uplink ◀──────┤  connection)
             ────▶ down topic (manual ack) ──▶ Downlink.receive ──▶ inbox ─────┤
    MES / plant ◀─ plant link (supervised) ◀── Downlink.run ◀───── inbox ──────┤
    MES, planners, plant IT ─▶ local web surface ─▶ BusinessWriter, Downlink ──┘

``plantsync.app`` builds the ``Parts`` (the store opener, the hub transport, the sources and
the schedule sink from the drivers registry, the local web surface, the observer of service
levels); the agent builds its running core over the open store (pipeline, uplink, downlink,
business writer, one sequencer) and never names a concrete driver.

Start: the store (a corrupt file is moved aside and a fresh store opened: ``quarantine.py``),
then the hub link (the sink), the pipeline, the plant link, the local web surface, the sources,
the periodic jobs (snapshots on a monotonic interval, the store's retention on a wall-clock cron
schedule through APScheduler). Stop (SIGTERM): the web surface (open requests finish), the
periodic jobs and the sources, then the pipeline (it commits what is queued) and the plant link,
then the hub link, which keeps draining the outbox for at most ``shutdown_timeout``, publishes
``offline`` and disconnects. Whatever is not delivered by then stays in the store for the next
start: nothing committed is lost.

The polled MES endpoints (``agent/polling``) start with the sources, each its own supervised
link; the agent's one APScheduler (in ``site.timezone``) runs the retention and their cron jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from plantsync import __version__
from plantsync.agent.business import BusinessWriter
from plantsync.agent.downlink import Downlink
from plantsync.agent.housekeeping import Housekeeping, retention_policy
from plantsync.agent.pipeline import Pipeline
from plantsync.agent.policy import SchedulePolicy
from plantsync.agent.polling import PollEndpoint, PollRunner, runners
from plantsync.agent.recovery.nudge import Nudge, watch
from plantsync.agent.reporting import PlantEventReporter
from plantsync.agent.sequencer import Sequencer
from plantsync.agent.sourcing import ack_rules, gap_aware_pipeline, source_session
from plantsync.agent.supervisor import (
    Backoff,
    LinkHealth,
    LinkState,
    Session,
    every,
    first_completed,
    supervise,
)
from plantsync.agent.uplink import Uplink
from plantsync.buffer.store import Store
from plantsync.config.certificates import material_files
from plantsync.config.model import AgentConfig
from plantsync.contracts import SiteStatus, Topics
from plantsync.contracts.orders import ResyncReason
from plantsync.drivers.base import PlantEvents, ScheduleSink, Source
from plantsync.drivers.hub import Hub, HubFactory, Will
from plantsync.errors import HubUnavailable, LinkError, LinkMisconfigured

log = logging.getLogger(__name__)

HUB = "hub"
PLANT = "plant"


class Observer(Protocol):
    """Receives the service-level events as they happen (the metrics endpoint implements it)."""

    def schedule_applied(
        self, latency_seconds: float, correlation_id: str, order_ids: Sequence[str]
    ) -> None:
        """One down message settled APPLIED, ``latency_seconds`` after HQ's event time."""
        ...

    def confirmed(self, *, final: bool) -> None:
        """One production confirmation committed for HQ."""
        ...


class LocalServer(Protocol):
    """The local web surface as the agent runs it: serve until stopped, bounded stop."""

    @property
    def port(self) -> int:
        """The port it listens on (the one the OS chose when the config said 0)."""
        ...

    async def serve(self) -> None:
        """Answer requests until ``stop``."""
        ...

    async def stop(self, task: asyncio.Task[None]) -> None:
        """Stop accepting, let open requests finish within a bound, then cancel ``task``."""
        ...

    def close(self) -> None:
        """Release the listening socket; for a server whose ``serve`` never ran."""
        ...


@dataclass(frozen=True)
class Parts:
    """What the composition root gives the agent: everything that is not its running core."""

    open_store: Callable[[], Awaitable[Store]]
    """Opens the store (moving a corrupt file aside); the agent closes it when it stops."""
    hub: HubFactory
    """A new, unconnected hub session per connect, given the last will."""
    sources: Mapping[str, Callable[[], Source]]
    """Link name (``opcua:<name>``) → a new, unconnected source per connect."""
    schedule_sink: Callable[[], ScheduleSink]
    """A new, unconnected connection to the plant system that takes the schedule."""
    web: Callable[[Agent], LocalServer]
    """The local web surface over the running agent, bound to its socket, not yet serving."""
    observer: Observer
    pollers: Mapping[str, PollEndpoint] = field(default_factory=dict)
    """Link name (``mes-poll:<name>``) → a polled MES endpoint (``agent/polling``)."""


class Agent:
    """One plant's agent. ``run`` returns after a clean stop."""

    def __init__(self, config: AgentConfig, *, config_hash: str, parts: Parts) -> None:
        self.config, self.config_hash, self.parts = config, config_hash, parts
        self.topics = Topics(config.hub.topic_prefix, config.site.id)
        self.health: dict[str, LinkHealth] = {HUB: LinkHealth(HUB), PLANT: LinkHealth(PLANT)}
        for name in parts.sources:
            self.health[name] = LinkHealth(name)
        for name in parts.pollers:
            self.health[name] = LinkHealth(name)
        self.pollers: dict[str, PollRunner] = {}
        """The polled MES endpoints' running objects (their counters), while running."""
        self.scheduler: AsyncIOScheduler | None = None
        """The one scheduler of wall-clock jobs (retention, cron polls), in site.timezone."""
        self._sequencer: Sequencer | None = None
        self._stopping = asyncio.Event()
        self.nudge = Nudge()
        """Reconnects the links now: SIGHUP or renewed TLS files (renew), a network back (wake)."""
        self._started = datetime.now(UTC)
        self._started_tick = time.monotonic()
        self.store: Store | None = None
        self.downlink: Downlink | None = None
        self.business: BusinessWriter | None = None
        """Set while running: the local API reads the schedule, approves changes and takes
        confirmations through these."""
        self.web: LocalServer | None = None
        self.pipeline: Pipeline | None = None
        self.uplink: Uplink | None = None
        self.housekeeping: Housekeeping | None = None
        """The store's nightly retention (``[store].retention_schedule``), while running."""

    @property
    def started_at(self) -> datetime:
        return self._started

    @property
    def uptime_seconds(self) -> float:
        """Seconds since start on the monotonic clock: a wall-clock step does not change it."""
        return time.monotonic() - self._started_tick

    async def correlation_of(self, order_id: str) -> str | None:
        """The correlation id of the schedule message that last applied ``order_id``, from the
        store (it survives restarts); None before the store is open or for an unknown order."""
        if self.store is None:
            return None
        return await self.store.inbox.correlation_of(order_id)

    @property
    def api_port(self) -> int | None:
        """The local API's port once it listens (the one chosen when the config says 0)."""
        return self.web.port if self.web is not None else None

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Run until ``stop`` is set, then stop in order within the configured bounds."""
        store = await self.parts.open_store()
        try:
            sequencer = Sequencer(await store.outbox.last_sequences())
            pipeline = await gap_aware_pipeline(store, self.topics, sequencer, self.config)
            uplink = Uplink(
                store.outbox,
                self.health[HUB],
                wakeup=pipeline.committed,
                max_inflight=self.config.hub.max_inflight,
                stall_timeout=self.config.hub.stall_timeout.total_seconds(),
                replay=self.config.uplink,
            )
            self.pipeline, self.uplink = pipeline, uplink
            downlink = await self.attach(store, pipeline.committed, sequencer)
            if store.health.quarantine is not None:
                # The fresh store knows no schedule and no down seq: ask HQ for all of it.
                await downlink.request_resync(ResyncReason.STARTUP)
            self.web = self.parts.web(self)
            with contextlib.closing(self.web):
                await self._run_links(pipeline, uplink, downlink, self.web, stop, on_ready)
        finally:
            await store.close()

    async def attach(
        self, store: Store, outbox_changed: asyncio.Event, sequencer: Sequencer | None = None
    ) -> Downlink:
        """Build what works on the open ``store`` alone (the business writer, the downlink),
        as ``run`` does; tests call it to serve the local API without any link.

        ``outbox_changed`` is set after every commit to the outbox (it wakes the uplink);
        ``sequencer`` numbers every stream (one is made from the outbox when not given)."""
        sequencer = sequencer or Sequencer(await store.outbox.last_sequences())
        self.store, self._sequencer = store, sequencer
        self.business = BusinessWriter(store, self.topics, sequencer, outbox_changed)
        self.downlink = self._downlink(store, sequencer, outbox_changed)
        return self.downlink

    def _downlink(
        self, store: Store, sequencer: Sequencer, outbox_changed: asyncio.Event
    ) -> Downlink:
        schedule = self.config.schedule
        return Downlink(
            store,
            self.topics,
            sequencer,
            policy=SchedulePolicy(schedule.frozen_horizon, schedule.quantity_threshold),
            outbox_changed=outbox_changed,
            retry_delays=(
                schedule.retry_initial_delay.total_seconds(),
                schedule.retry_max_delay.total_seconds(),
            ),
            max_message_bytes=int(schedule.max_message_size),
            on_applied=self.parts.observer.schedule_applied,
            alarm_acks=ack_rules(self.config.opcua),
        )

    async def _run_links(
        self,
        pipeline: Pipeline,
        uplink: Uplink,
        downlink: Downlink,
        web: LocalServer,
        stop: asyncio.Event,
        on_ready: Callable[[], None] | None,
    ) -> None:
        business, acks = self.business, downlink.alarm_acks
        assert business is not None
        async with asyncio.TaskGroup() as tasks:
            hub = tasks.create_task(
                supervise(
                    self.health[HUB],
                    self._hub_session(uplink, downlink),
                    self._backoff(),
                    self.nudge,
                ),
                name="link:hub",
            )
            writer = tasks.create_task(pipeline.run(), name="pipeline")
            plant = tasks.create_task(
                supervise(
                    self.health[PLANT], self._plant_session(downlink), self._backoff(), self.nudge
                ),
                name="link:plant",
            )
            served = tasks.create_task(web.serve(), name="web")
            sources = [
                tasks.create_task(
                    supervise(
                        self.health[name],
                        source_session(
                            self.health[name], self.parts.sources[name], pipeline, business, acks
                        ),
                        self._backoff(),
                        self.nudge,
                    ),
                    name=f"link:{name}",
                )
                for name in self.parts.sources
            ]
            snapshots = tasks.create_task(self._snapshots(pipeline), name="snapshots")
            assert self.store is not None
            store = self.config.store
            self.scheduler = scheduler = AsyncIOScheduler(timezone=self.config.site.zone)
            scheduler.start()
            self.housekeeping = Housekeeping(
                self.store,
                retention_policy(store, self.parts.pollers),
                store.retention_schedule,
                timezone=self.config.site.zone,
                scheduler=scheduler,
            )
            retention = tasks.create_task(self.housekeeping.run(), name="retention")
            watched = functools.partial(material_files, self.config)
            watcher = tasks.create_task(watch(self.nudge, watched), name="nudge-watch")
            assert self._sequencer is not None
            self.pollers = runners(
                self.parts.pollers,
                self.store,
                self.topics,
                self._sequencer,
                pipeline.committed,
                self.health,
                scheduler,
                self.config.site.zone,
            )
            polls = [
                tasks.create_task(
                    supervise(self.health[name], runner.session, self._backoff()),
                    name=f"link:{name}",
                )
                for name, runner in self.pollers.items()
            ]
            if on_ready is not None:
                on_ready()
            log.info("agent running: site %s, %d source link(s)", self.config.site.id, len(sources))
            await stop.wait()
            log.info("stopping: the local API and the sources, then the final flush to the hub")
            await web.stop(served)
            for source in [*sources, *polls, plant, snapshots, retention, watcher]:
                source.cancel()
            scheduler.shutdown(wait=False)
            await pipeline.close()
            await writer
            await self._stop_hub(hub)

    async def _stop_hub(self, hub: asyncio.Task[None]) -> None:
        self._stopping.set()
        timeout = self.config.shutdown_timeout.total_seconds()
        if self.health[HUB].state is not LinkState.UP:
            log.info("hub not connected at stop; the outbox keeps what waits for it")
            hub.cancel()
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(hub)
        except TimeoutError:
            log.warning(
                "hub flush not finished within %.0f s; undelivered messages stay in the outbox",
                timeout,
            )
            hub.cancel()

    def _hub_session(self, uplink: Uplink, downlink: Downlink) -> Session:
        will = Will(self.topics.status, self._status("offline", "connection-lost"), 1, True)

        async def session(up: Callable[[], None]) -> None:
            async with self.parts.hub(will) as link:
                await link.subscribe([(self.topics.down_schedule, 1), (self.topics.down_alarm, 1)])
                if not link.session_present:
                    # The broker kept nothing for us: schedules sent meanwhile may be lost.
                    await downlink.request_resync(ResyncReason.NO_SESSION)
                await self._acknowledged(link, self._status("online", "connected"))
                self.health[HUB].reached(link)
                up()
                await first_completed(uplink.serve(link, self._stopping), _receive(link, downlink))
                await self._acknowledged(link, self._status("offline", "shutdown"))

        return session

    def _plant_session(self, downlink: Downlink) -> Session:
        health = self.health[PLANT]

        async def session(up: Callable[[], None]) -> None:
            try:
                await serve(up)
            except (LinkError, LinkMisconfigured) as exc:
                # Schedules received meanwhile hear "pending" now, not when the link returns.
                await downlink.hold(str(exc), health)
                raise

        async def serve(up: Callable[[], None]) -> None:
            async with self.parts.schedule_sink() as sink:
                up()
                if not isinstance(sink, PlantEvents):
                    await downlink.run(sink, health)
                    return
                assert self.business is not None
                assert self.store is not None
                observer = self.parts.observer
                reporter = PlantEventReporter(
                    self.business,
                    self.store.inbox,
                    on_confirmed=lambda final: observer.confirmed(final=final),
                )
                # Either ending ends both, and a lost link reaches the supervisor as itself
                # (SourceUnavailable), so it reconnects: a TaskGroup would wrap it in an
                # ExceptionGroup that no supervisor catches, and the agent would exit.
                await first_completed(downlink.run(sink, health), reporter.report(sink.name, sink))

        return session

    async def _acknowledged(self, link: Hub, status: bytes) -> None:
        timeout = self.config.hub.connect_timeout.total_seconds()
        try:
            async with asyncio.timeout(timeout):
                await link.publish(self.topics.status, status, qos=1, retain=True)
        except TimeoutError as exc:
            raise HubUnavailable(f"status not acknowledged within {timeout:.0f} s") from exc

    async def _snapshots(self, pipeline: Pipeline) -> None:
        """Ask for a full snapshot every ``policy.snapshot_interval`` until cancelled."""
        interval = self.config.policy.snapshot_interval.total_seconds()
        if interval > 0:
            await every(interval, pipeline.request_snapshot)

    def _backoff(self) -> Backoff:
        reconnect = self.config.reconnect
        return Backoff(reconnect.initial_delay.total_seconds(), reconnect.max_delay.total_seconds())

    def _status(
        self,
        state: Literal["online", "offline"],
        reason: Literal["connected", "shutdown", "connection-lost"],
    ) -> bytes:
        status = SiteStatus(
            site=self.config.site.id,
            state=state,
            reason=reason,
            version=__version__,
            config_hash=self.config_hash,
            since=self._started,
        )
        return status.model_dump_json().encode()


async def _receive(link: Hub, downlink: Downlink) -> None:
    """Every down message is committed (inbox or dead letters) before its MQTT ack.

    When the commit fails (``StoreDiskFull``: the disk under the store is full) the message is
    not acknowledged and the session ends; the supervisor connects again a few seconds later
    and the broker, which kept the persistent session, delivers it again. Going on with the
    next message instead would acknowledge later messages before this one is stored.
    """
    async for message in link.messages():
        await downlink.receive(message.topic, message.payload)
        link.ack(message)
