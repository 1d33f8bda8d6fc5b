"""The composition root: config in, an agent with all its parts out. The only module that
knows every room.

    AgentConfig ─▶ build_agent ─▶ Agent(config, parts)
                    ├─ open_store      buffer.Store.open (a corrupt file is moved aside)
                    ├─ hub             drivers.mqtt.HubConnection, bound to [hub] and client id
                    ├─ sources         drivers.SOURCES[kind](section), one per configured server
                    ├─ schedule_sink   drivers.SCHEDULE_SINKS (Job Control, MES) or the agent's own
                    ├─ pollers         drivers.POLLERS[kind](endpoint), one per [[mes_poll]]
                    ├─ web             web.DeferredApi: the socket now, web.create_app on
                    │                  web.ApiServer once READY is sent (``web/serving``)
                    └─ observer        web.AgentMetrics: the service levels, as they happen

Everything else receives its collaborators: the agent runs its core (pipeline, uplink,
downlink, business writer) over the parts, and a test swaps any part, e.g. a fake ``Hub``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from plantsync.agent.polling import PollEndpoint
from plantsync.agent.service import Agent, Parts
from plantsync.buffer.archive import ArchivePolicy
from plantsync.buffer.store import Store
from plantsync.config.model import AgentConfig
from plantsync.config.plant import PollEndpointConfig
from plantsync.drivers import POLLERS, SCHEDULE_SINKS, SOURCES
from plantsync.drivers.base import ScheduleSink, Source
from plantsync.drivers.hub import Hub, HubFactory, Will
from plantsync.drivers.localschedule import LocalScheduleSink
from plantsync.drivers.mqtt import HubConnection, ProtocolChoice, UrlOrder, maximum_packet_size
from plantsync.web.metrics import AgentMetrics
from plantsync.web.serving.deferred import DeferredApi


def build_agent(config: AgentConfig, *, config_hash: str, hub: HubFactory | None = None) -> Agent:
    """The agent for ``config``; ``hub`` replaces the MQTT transport (tests, other transports)."""
    metrics = AgentMetrics()
    parts = Parts(
        open_store=functools.partial(open_store, config),
        hub=hub or mqtt_hub(config),
        sources=sources(config),
        schedule_sink=schedule_sink(config),
        web=lambda agent: DeferredApi.bind(agent, metrics, config.api),
        observer=metrics,
        pollers=pollers(config),
    )
    return Agent(config, config_hash=config_hash, parts=parts)


async def open_store(config: AgentConfig) -> Store:
    """The agent's store from ``[store]``; a corrupt file is quarantined, never fatal."""
    return await Store.open(
        config.store.path,
        max_size_bytes=int(config.store.max_size),
        archive=archive_policy(config),
        on_corrupt="quarantine",
        dead_letter_max_bytes=int(config.store.dead_letter_max_size),
        dead_letter_cap=config.store.dead_letter_bytes,
    )


def archive_policy(config: AgentConfig) -> ArchivePolicy:
    """The sent archive's bounds from ``[store]``."""
    return ArchivePolicy(config.store.archive_max_age.total_seconds(), config.store.archive_bytes)


def mqtt_hub(
    config: AgentConfig,
    protocols: ProtocolChoice | None = None,
    endpoints: UrlOrder | None = None,
) -> HubFactory:
    """Hub sessions over MQTT: persistent, down messages acknowledged once durable.

    The sessions share ``protocols`` and ``endpoints``, so a reconnect offers first the MQTT
    version the broker accepted last, and goes to the hub's next URL after a drop. For the
    status page and metrics: ``endpoints.current`` is the URL in use (while the link is up),
    ``protocols.negotiated(url)`` its MQTT version.
    """
    choice = protocols or ProtocolChoice(config.hub.protocol)
    order = endpoints or UrlOrder(config.hub.urls)

    def connect(will: Will) -> Hub:
        return HubConnection(
            config.hub,
            client_id=config.client_id,
            will=will,
            manual_ack=True,
            protocols=choice,
            endpoints=order,
            maximum_packet_size=maximum_packet_size(int(config.schedule.max_message_size)),
        )

    return connect


def sources(config: AgentConfig) -> dict[str, Callable[[], Source]]:
    """One source per configured server, by link name (``<kind>:<name>``)."""
    sections = {"opcua": config.opcua}
    return {
        f"{kind}:{server.name}": functools.partial(SOURCES[kind], server)
        for kind, servers in sections.items()
        for server in servers
    }


def schedule_sink(config: AgentConfig) -> Callable[[], ScheduleSink]:
    """The one plant system that takes the schedule: the first configured in registry order,
    else the agent's own last-known-good schedule (served by the local API)."""
    for kind, build in SCHEDULE_SINKS.items():
        section = getattr(config, kind, None)
        if section is not None:
            return functools.partial(build, section)
    return LocalScheduleSink


def pollers(config: AgentConfig) -> dict[str, PollEndpoint]:
    """One polled endpoint per ``[[mes_poll]]`` entry, by link name (``mes-poll:<name>``)."""
    return {f"mes-poll:{endpoint.name}": poll_endpoint(endpoint) for endpoint in config.mes_poll}


def poll_endpoint(endpoint: PollEndpointConfig) -> PollEndpoint:
    """One ``[[mes_poll]]`` entry as the agent runs it."""
    return PollEndpoint(
        f"mes-poll:{endpoint.name}",
        functools.partial(POLLERS["mes_poll"], endpoint),
        interval=endpoint.interval.total_seconds() if endpoint.interval else None,
        cron=endpoint.cron,
        max_pages=endpoint.max_pages,
        min_request_interval=endpoint.min_request_interval.total_seconds(),
        where=f"{endpoint.method} {endpoint.url}",
    )
