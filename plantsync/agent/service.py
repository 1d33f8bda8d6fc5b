"""The agent: wires the links, the pipeline and the store, and stops them in order.

    OPC UA server ─▶ source link (supervised) ─submit─▶ Pipeline ─add─▶ outbox (SQLite)
    OPC UA server ─▶ source link (supervised) ─┘                          │ begin / ack / nack
                                                                           ▼
    MQTT hub ◀──── hub link (supervised, persistent session) ◀──────── Uplink

Start: the store, then the hub link (the sink), the pipeline, the sources, the periodic jobs.
Stop (SIGTERM): the periodic jobs and the sources, then the pipeline (it commits what is queued),
then the hub link, which keeps draining the outbox for at most ``shutdown_timeout``, publishes
``offline`` and disconnects. Whatever is not delivered by then stays in the outbox for the next
start: nothing committed is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from plantsync import __version__
from plantsync.agent.pipeline import Pipeline
from plantsync.agent.supervisor import Backoff, LinkHealth, Session, supervise
from plantsync.agent.uplink import Uplink
from plantsync.buffer.sqlite import SqliteOutbox
from plantsync.config.model import AgentConfig, OpcUaServerConfig
from plantsync.contracts import SiteStatus, Topics
from plantsync.drivers import SOURCES
from plantsync.drivers.mqtt import HubConnection, Will
from plantsync.errors import HubUnavailable

log = logging.getLogger(__name__)

HUB = "hub"


class Agent:
    """One plant's agent. ``run`` returns after a clean stop."""

    def __init__(self, config: AgentConfig, *, config_hash: str) -> None:
        self.config, self.config_hash = config, config_hash
        self.topics = Topics(config.hub.topic_prefix, config.site.id)
        self.health: dict[str, LinkHealth] = {HUB: LinkHealth(HUB)}
        for server in config.opcua:
            self.health[f"opcua:{server.name}"] = LinkHealth(f"opcua:{server.name}")
        self._stopping = asyncio.Event()
        self._started = datetime.now(UTC)

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Run until ``stop`` is set, then stop in order within the configured bounds."""
        outbox = await SqliteOutbox.open(
            self.config.store.path, max_size_bytes=int(self.config.store.max_size)
        )
        try:
            pipeline = Pipeline(outbox, self.topics, commit_batch=self.config.store.commit_batch)
            await pipeline.start()
            uplink = Uplink(
                outbox,
                self.health[HUB],
                wakeup=pipeline.committed,
                max_inflight=self.config.hub.max_inflight,
                stall_timeout=self.config.hub.stall_timeout.total_seconds(),
            )
            await self._run_links(pipeline, uplink, stop, on_ready)
        finally:
            await outbox.close()

    async def _run_links(
        self,
        pipeline: Pipeline,
        uplink: Uplink,
        stop: asyncio.Event,
        on_ready: Callable[[], None] | None,
    ) -> None:
        async with asyncio.TaskGroup() as tasks:
            hub = tasks.create_task(
                supervise(self.health[HUB], self._hub_session(uplink), self._backoff()),
                name="link:hub",
            )
            writer = tasks.create_task(pipeline.run(), name="pipeline")
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
            scheduler = self._start_jobs(pipeline)
            if on_ready is not None:
                on_ready()
            log.info("agent running: site %s, %d source link(s)", self.config.site.id, len(sources))
            await stop.wait()
            log.info("stopping: sources first, then the final flush to the hub")
            scheduler.shutdown(wait=False)
            for source in sources:
                source.cancel()
            await pipeline.close()
            await writer
            await self._stop_hub(hub)

    async def _stop_hub(self, hub: asyncio.Task[None]) -> None:
        self._stopping.set()
        timeout = self.config.shutdown_timeout.total_seconds()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(hub)
        except TimeoutError:
            log.warning(
                "hub flush not finished within %.0f s; undelivered messages stay in the outbox",
                timeout,
            )
            hub.cancel()

    def _hub_session(self, uplink: Uplink) -> Session:
        hub = self.config.hub
        will = Will(self.topics.status, self._status("offline", "connection-lost"), 1, True)

        async def session(up: Callable[[], None]) -> None:
            async with HubConnection(hub, client_id=self.config.client_id, will=will) as link:
                await self._acknowledged(link, self._status("online", "connected"))
                up()
                await uplink.serve(link, self._stopping)
                await self._acknowledged(link, self._status("offline", "shutdown"))

        return session

    async def _acknowledged(self, link: HubConnection, status: bytes) -> None:
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

    def _start_jobs(self, pipeline: Pipeline) -> AsyncIOScheduler:
        scheduler = AsyncIOScheduler(timezone=UTC)
        interval = self.config.policy.snapshot_interval.total_seconds()
        if interval > 0:
            scheduler.add_job(
                pipeline.request_snapshot,
                "interval",
                seconds=interval,
                id="snapshot",
                coalesce=True,
                max_instances=1,
            )
        scheduler.start()
        return scheduler

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
