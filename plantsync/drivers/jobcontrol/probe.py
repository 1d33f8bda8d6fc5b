"""What a Job Control server offers, found as the sink finds it, for ``plantsync jobcontrol
probe``: no subscription, no call; one session, closed again.

    connect ─▶ Server.Namespaces: the Job Control namespace's NamespaceMetadata (version, date)
            ─▶ ``discovery.discover``: the receiver, the methods it offers, the provider
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.uaerrors import UaStatusCodeError

from plantsync.config.plant import JobControlConfig
from plantsync.drivers.common.opcua import close_session, map_asyncua_exceptions, new_client
from plantsync.drivers.jobcontrol import codec
from plantsync.drivers.jobcontrol.discovery import JobControlNodes, discover
from plantsync.drivers.jobcontrol.plan import EVERY_METHOD


@dataclass(frozen=True, slots=True)
class Namespace:
    """The Job Control namespace as the server describes it (NamespaceMetadataType); a server
    need not expose the metadata, then ``version`` and ``published`` are None."""

    uri: str
    index: int
    version: str | None
    published: datetime | None


@dataclass(frozen=True, slots=True)
class Probe:
    """What ``probe`` found: the namespace and the nodes the sink would use."""

    endpoint: str
    namespace: Namespace
    nodes: JobControlNodes

    @property
    def offered(self) -> list[str]:
        return sorted(self.nodes.methods)

    @property
    def absent(self) -> list[str]:
        return sorted(EVERY_METHOD - set(self.nodes.methods))


async def probe(config: JobControlConfig) -> Probe:
    """Connect with ``config``, find what the sink would find; SourceUnavailable when the
    server cannot be reached, LinkMisconfigured when it is not the Job Control we speak."""
    timeout = config.request_timeout.total_seconds()
    client: Client | None = None
    try:
        with map_asyncua_exceptions(config.name, f"connecting to {config.endpoint}"):
            client = await new_client(config)
            async with asyncio.timeout(timeout):
                await client.connect()
        with map_asyncua_exceptions(config.name, "browsing the job order receiver"):
            async with asyncio.timeout(timeout * 4):
                nodes = await discover(
                    client, config.name, config.job_order_receiver, config.job_response_provider
                )
                namespace = await _namespace(client)
        return Probe(config.endpoint, namespace, nodes)
    finally:
        if client is not None:
            await close_session(client, [])


async def _namespace(client: Client) -> Namespace:
    index = await client.get_namespace_index(codec.NAMESPACE_URI)
    for metadata in await client.nodes.namespaces.get_children():
        if await _read(metadata, "NamespaceUri") == codec.NAMESPACE_URI:
            version = await _read(metadata, "NamespaceVersion")
            published = await _read(metadata, "NamespacePublicationDate")
            return Namespace(
                codec.NAMESPACE_URI,
                index,
                str(version) if version else None,
                published if isinstance(published, datetime) else None,
            )
    return Namespace(codec.NAMESPACE_URI, index, None, None)


async def _read(node: Node, name: str) -> object:
    """A property of a NamespaceMetadata object; None when the server leaves it out."""
    try:
        return await (await node.get_child(f"0:{name}")).read_value()
    except UaStatusCodeError:
        return None
