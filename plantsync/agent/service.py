"""The agent: wires the links, the pipeline and the store, and stops them in order.

    OPC UA server ─▶ source link (supervised) ─submit─▶ Pipeline ─add─▶ outbox ┐
    OPC UA server ─▶ source link (supervised) ─┘                               │ (SQLite store:
                                                                               │  one file, one
    MQTT hub ◀──── hub link (supervised, persistent session) ◀── Uplink ◀──────┤  connection)
             ────▶ down topic (manual ack) ──▶ Downlink.receive ──▶ inbox ─────┤
    MES / plant ◀─ plant link (supervised) ◀── Downlink.run ◀───── inbox ──────┤
    MES, planners, plant IT ─▶ local API (HTTP) ─▶ BusinessWriter, Downlink ───┘

Start: the store (a corrupt file is moved aside and a fresh store opened: ``quarantine.py``),
then the hub link (the sink), the pipeline, the plant link, the local API, the sources, the
periodic snapshot. Stop (SIGTERM): the local API (open requests finish), the
periodic jobs and the sources, then the pipeline (it commits what is queued) and the plant
link, then the hub link, which keeps draining the outbox for at most ``shutdown_timeout``,
publishes ``offline`` and disconnects. Whatever is not delivered by then stays in the store for
the next start: nothing committed is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Literal

from plantsync import __version__
from plantsync.agent.business import BusinessWriter
from plantsync.agent.downlink import Downlink
from plantsync.agent.pipeline import Pipeline
from plantsync.agent.policy import SchedulePolicy
from plantsync.agent.reporting import PlantEventReporter
from plantsync.agent.sequencer import Sequencer
from plantsync.agent.supervisor import Backoff, LinkHealth, LinkState, Session, supervise
from plantsync.agent.uplink import Uplink
from plantsync.buffer.archive import ArchivePolicy
from plantsync.buffer.store import Store
from plantsync.config.model import AgentConfig, OpcUaServerConfig
from plantsync.contracts import SiteStatus, Topics
from plantsync.contracts.orders import ResyncReason
from plantsync.drivers import SOURCES
from plantsync.drivers.base import PlantEvents, ScheduleSink
from plantsync.drivers.hub import Hub, InboundMessage, Will
from plantsync.drivers.jobcontrol import JobControlSink
from plantsync.drivers.localschedule import LocalScheduleSink
from plantsync.drivers.mes_http import MesHttpSink
from plantsync.drivers.mqtt import HubConnection
from plantsync.errors import HubUnavailable
from plantsync.web.api import create_app
from plantsync.web.apiserver import ApiServer
from plantsync.web.metrics import AgentMetrics

log = logging.getLogger(__name__)

HUB = "hub"
PLANT = "plant"


class Agent:
    """One plant's agent. ``run`` returns after a clean stop."""

    def __init__(self, config: AgentConfig, *, config_hash: str) -> None:
        self.config, self.config_hash = config, config_hash
        self.topics = Topics(config.hub.topic_prefix, config.site.id)
        self.health: dict[str, LinkHealth] = {HUB: LinkHealth(HUB), PLANT: LinkHealth(PLANT)}
        for server in config.opcua:
            self.health[f"opcua:{server.name}"] = LinkHealth(f"opcua:{server.name}")
        self._stopping = asyncio.Event()
        self._started = datetime.now(UTC)
        self._started_tick = time.monotonic()
        self.store: Store | None = None
        self.downlink: Downlink | None = None
        self.business: BusinessWriter | None = None
        """Set while running: the local API reads the schedule, approves changes and takes
        confirmations through these."""
        self.api: ApiServer | None = None
        self.pipeline: Pipeline | None = None
        self.uplink: Uplink | None = None
        self.metrics = AgentMetrics(self)

    @property
    def started_at(self) -> datetime:
        return self._started

    @property
    def uptime_seconds(self) -> float:
        """Seconds since start on the monotonic clock: a wall-clock step does not change it."""
        return time.monotonic() - self._started_tick

    async def correlation_of(self, order_id: str) -> str | None:
        """The correlation id of the schedule that last applied ``order_id``, if known."""
        return self.metrics.correlation_of(order_id)

    @property
    def api_port(self) -> int | None:
        """The local API's port once it listens (the one chosen when the config says 0)."""
        return self.api.port if self.api is not None else None

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Run until ``stop`` is set, then stop in order within the configured bounds."""
        store = await Store.open(
            self.config.store.path,
            max_size_bytes=int(self.config.store.max_size),
            archive=archive_policy(self.config),
            on_corrupt="quarantine",
        )
        try:
            pipeline = Pipeline(
                store.outbox, self.topics, commit_batch=self.config.store.commit_batch
            )
            await pipeline.start()
            uplink = Uplink(
                store.outbox,
                self.health[HUB],
                wakeup=pipeline.committed,
                max_inflight=self.config.hub.max_inflight,
                stall_timeout=self.config.hub.stall_timeout.total_seconds(),
            )
            self.pipeline, self.uplink = pipeline, uplink
            downlink = await self.attach(store, pipeline.committed)
            if store.health.quarantine is not None:
                # The fresh store knows no schedule and no down seq: ask HQ for all of it.
                await downlink.request_resync(ResyncReason.STARTUP)
            self.api = ApiServer.bind(create_app(self), self.config.api)
            with contextlib.closing(self.api):
                await self._run_links(pipeline, uplink, downlink, self.api, stop, on_ready)
        finally:
            await store.close()

    async def attach(self, store: Store, outbox_changed: asyncio.Event) -> Downlink:
        """Build what works on the open ``store`` alone (the business writer, the downlink),
        as ``run`` does; tests call it to serve the local API without any link."""
        sequencer = Sequencer(await store.outbox.last_sequences())
        self.store = store
        self.business = BusinessWriter(store.outbox, self.topics, sequencer, outbox_changed)
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
            on_applied=self.metrics.schedule_applied,
        )

    async def _run_links(
        self,
        pipeline: Pipeline,
        uplink: Uplink,
        downlink: Downlink,
        api: ApiServer,
        stop: asyncio.Event,
        on_ready: Callable[[], None] | None,
    ) -> None:
        async with asyncio.TaskGroup() as tasks:
            hub = tasks.create_task(
                supervise(self.health[HUB], self._hub_session(uplink, downlink), self._backoff()),
                name="link:hub",
            )
            writer = tasks.create_task(pipeline.run(), name="pipeline")
            plant = tasks.create_task(
                supervise(self.health[PLANT], self._plant_session(downlink), self._backoff()),
                name="link:plant",
            )
            served = tasks.create_task(api.serve(), name="api")
            sources = [
                tasks.create_task(
                    supervise(
                        self.health[name],
                        self._source_session(name, server, pipeline),
                        self._backoff(),
                    ),
                    name=f"link:{name}",
                )
                for name, server in ((f"opcua:{s.name}", s) for s in self.config.opcua)
            ]
            snapshots = tasks.create_task(self._snapshots(pipeline), name="snapshots")
            if on_ready is not None:
                on_ready()
            log.info("agent running: site %s, %d source link(s)", self.config.site.id, len(sources))
            await stop.wait()
            log.info("stopping: the local API and the sources, then the final flush to the hub")
            await api.stop(served)
            for source in [*sources, plant, snapshots]:
                source.cancel()
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
        hub = self.config.hub
        will = Will(self.topics.status, self._status("offline", "connection-lost"), 1, True)

        async def session(up: Callable[[], None]) -> None:
            async with HubConnection(
                hub, client_id=self.config.client_id, will=will, manual_ack=True
            ) as link:
                await link.subscribe([(self.topics.down_schedule, 1)])
                if not link.session_present:
                    # The broker kept nothing for us: schedules sent meanwhile may be lost.
                    await downlink.request_resync(ResyncReason.NO_SESSION)
                await self._acknowledged(link, self._status("online", "connected"))
                up()
                await _serve_both(uplink.serve(link, self._stopping), _receive(link, downlink))
                await self._acknowledged(link, self._status("offline", "shutdown"))

        return session

    def _plant_session(self, downlink: Downlink) -> Session:
        health = self.health[PLANT]

        async def session(up: Callable[[], None]) -> None:
            async with self._schedule_sink() as sink:
                up()
                if not isinstance(sink, PlantEvents):
                    await downlink.run(sink, health)
                    return
                assert self.business is not None
                reporter = PlantEventReporter(self.business, self.metrics)
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(downlink.run(sink, health), name="downlink")
                    tasks.create_task(reporter.report(sink.name, sink), name="plant-events")

        return session

    def _schedule_sink(self) -> ScheduleSink:
        # One plant system takes the schedule: Job Control (machines) ahead of the MES.
        if self.config.jobcontrol is not None:
            return JobControlSink(self.config.jobcontrol)
        if self.config.mes is not None:
            return MesHttpSink(self.config.mes)
        return LocalScheduleSink()

    async def _acknowledged(self, link: Hub, status: bytes) -> None:
        timeout = self.config.hub.connect_timeout.total_seconds()
        try:
            async with asyncio.timeout(timeout):
                await link.publish(self.topics.status, status, qos=1, retain=True)
        except TimeoutError as exc:
            raise HubUnavailable(f"status not acknowledged within {timeout:.0f} s") from exc

    def _source_session(self, name: str, server: OpcUaServerConfig, pipeline: Pipeline) -> Session:
        health = self.health[name]

        async def session(up: Callable[[], None]) -> None:
            async with SOURCES["opcua"](server) as source:
                up()
                async for batch in source.readings():
                    health.touch()
                    await pipeline.submit(name, batch)

        return session

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


async def every(
    interval: float,
    action: Callable[[], Awaitable[None]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run ``action`` every ``interval`` seconds until cancelled, first after one interval.

    The event loop's clock is monotonic, so a wall-clock step neither delays the next run
    (APScheduler's interval trigger, which this replaces, waited out a backward step) nor runs
    missed ones in a burst. A slow ``action`` delays the next run; runs never overlap.
    """
    while True:
        await sleep(interval)
        await action()


def archive_policy(config: AgentConfig) -> ArchivePolicy:
    """The sent archive's bounds from ``[store]``."""
    return ArchivePolicy(config.store.archive_max_age.total_seconds(), config.store.archive_bytes)


async def _receive(link: Hub, downlink: Downlink) -> None:
    """Every down message is committed (inbox or dead letters) before its MQTT ack.

    When the commit fails (``StoreDiskFull``: the disk under the store is full) the message is
    not acknowledged and the session ends; the supervisor connects again a few seconds later
    and the broker, which kept the persistent session, delivers it again. Going on with the
    next message instead would acknowledge later messages before this one is stored.
    """
    message: InboundMessage
    async for message in link.messages():
        await downlink.receive(message.topic, message.payload)
        link.ack(message)


async def _serve_both(
    uplink: Coroutine[None, None, None], receiver: Coroutine[None, None, None]
) -> None:
    """Run the uplink and the receiver on one connection. The uplink returning (a clean stop)
    ends both; an error in either ends both and reaches the supervisor as itself."""
    sending = asyncio.create_task(uplink, name="hub-send")
    receiving = asyncio.create_task(receiver, name="hub-receive")
    try:
        done, _ = await asyncio.wait({sending, receiving}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
        await sending
    finally:
        for task in (receiving, sending):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, HubUnavailable):
                await task
