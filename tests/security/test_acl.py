"""The shipped ACL template (packaging/mosquitto-acl.conf) on a real Mosquitto with mutual TLS:
the certificate's CN is the username, and each site reaches only its own subtree."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from plantsync.config.model import HubConfig, MqttProtocol
from plantsync.config.types import Tls
from plantsync.drivers.hub import InboundMessage
from plantsync.drivers.mqtt import HubConnection
from plantsync.errors import LinkMisconfigured
from plantsync.tools.localbroker import Mosquitto
from tests.security.support import Authority, mqtts_url

QUIET = 0.5
"""How long a subscriber must stay silent, after a control subscriber got the same message."""


@contextlib.asynccontextmanager
async def connected(
    broker: Mosquitto, authority: Authority, name: str, protocol: MqttProtocol = MqttProtocol.V5
) -> AsyncIterator[HubConnection]:
    """A connection authenticated by a client certificate with CN ``name``."""
    identity = authority.client(name)
    tls = Tls(ca_file=authority.cert_file, cert_file=identity.cert_file, key_file=identity.key_file)
    config = HubConfig(
        url=mqtts_url(broker),
        protocol=protocol,
        tls=tls,
        keepalive=timedelta(seconds=5),
        connect_timeout=timedelta(seconds=3),
    )
    async with HubConnection(config, client_id=f"{name}-test", clean_start=True) as connection:
        yield connection


async def next_message(connection: HubConnection) -> InboundMessage:
    async with asyncio.timeout(5):
        async for message in connection.messages():
            return message
    raise AssertionError("messages() ended without a message")


async def silent(connection: HubConnection, seconds: float = QUIET) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await next_message(connection)
    except TimeoutError:
        return True
    return False


async def published(connection: HubConnection, topic: str, payload: bytes) -> None:
    async with asyncio.timeout(5):
        await connection.publish(topic, payload, qos=1)


async def refused_or_dropped(
    connection: HubConnection, protocol: MqttProtocol, topic: str, payload: bytes
) -> None:
    """Publish where the ACL forbids it: MQTT 5 gets a PUBACK 'Not authorized' (so the agent
    sees LinkMisconfigured); 3.1.1 has no such code, and Mosquitto acknowledges and drops."""
    if protocol is MqttProtocol.V311:
        await published(connection, topic, payload)
        return
    with pytest.raises(LinkMisconfigured, match="Not authorized"):
        await published(connection, topic, payload)


BOTH_PROTOCOLS = pytest.mark.parametrize("protocol", [MqttProtocol.V5, MqttProtocol.V311])


async def test_a_site_publishes_and_subscribes_under_its_own_subtree(
    tls_hub: Mosquitto, authority: Authority
) -> None:
    async with connected(tls_hub, authority, "plant-a") as plant_a:
        await plant_a.subscribe([("plantsync/v1/plant-a/#", 1)])
        await published(plant_a, "plantsync/v1/plant-a/up/state", b"own subtree")
        message = await next_message(plant_a)
    assert (message.topic, message.payload) == ("plantsync/v1/plant-a/up/state", b"own subtree")


async def test_a_site_cannot_read_another_sites_topics(
    tls_hub: Mosquitto, authority: Authority
) -> None:
    async with (
        connected(tls_hub, authority, "plant-a") as plant_a,
        connected(tls_hub, authority, "plant-b") as plant_b,
    ):
        # Mosquitto 2.0 grants the SUBSCRIBE and filters every delivery through the ACL.
        await plant_a.subscribe([("plantsync/v1/plant-b/#", 1)])
        await plant_b.subscribe([("plantsync/v1/plant-b/#", 1)])
        await published(plant_b, "plantsync/v1/plant-b/up/state", b"plant-b only")
        control = await next_message(plant_b)
        assert control.payload == b"plant-b only"
        assert await silent(plant_a)


@BOTH_PROTOCOLS
async def test_a_site_cannot_publish_into_another_sites_subtree(
    tls_hub: Mosquitto, authority: Authority, protocol: MqttProtocol
) -> None:
    async with (
        connected(tls_hub, authority, "plant-a", protocol) as plant_a,
        connected(tls_hub, authority, "plant-b") as plant_b,
        connected(tls_hub, authority, "hq-integration") as hq,
    ):
        await plant_b.subscribe([("plantsync/v1/plant-b/#", 1)])
        await hq.subscribe([("plantsync/v1/+/up/#", 1)])
        await refused_or_dropped(plant_a, protocol, "plantsync/v1/plant-b/up/ack", b"forged")
        await published(plant_b, "plantsync/v1/plant-b/up/ack", b"genuine")
        assert (await next_message(hq)).payload == b"genuine"
        assert (await next_message(plant_b)).payload == b"genuine"
        assert await silent(hq)
        assert await silent(plant_b)


async def test_hq_reads_every_sites_up_topics_and_writes_their_down_topics(
    tls_hub: Mosquitto, authority: Authority
) -> None:
    async with (
        connected(tls_hub, authority, "plant-a") as plant_a,
        connected(tls_hub, authority, "plant-b") as plant_b,
        connected(tls_hub, authority, "hq-integration") as hq,
    ):
        await hq.subscribe([("plantsync/v1/+/up/#", 1)])
        await plant_a.subscribe([("plantsync/v1/plant-a/down/#", 1)])
        await published(plant_a, "plantsync/v1/plant-a/up/state", b"from a")
        await published(plant_b, "plantsync/v1/plant-b/up/state", b"from b")
        received = {(await next_message(hq)).payload for _ in range(2)}
        await published(hq, "plantsync/v1/plant-a/down/schedule", b"release")
        schedule = await next_message(plant_a)
    assert received == {b"from a", b"from b"}
    assert (schedule.topic, schedule.payload) == ("plantsync/v1/plant-a/down/schedule", b"release")


@BOTH_PROTOCOLS
async def test_hq_cannot_forge_a_sites_up_message(
    tls_hub: Mosquitto, authority: Authority, protocol: MqttProtocol
) -> None:
    async with (
        connected(tls_hub, authority, "plant-a") as plant_a,
        connected(tls_hub, authority, "hq-integration", protocol) as hq,
    ):
        await plant_a.subscribe([("plantsync/v1/plant-a/#", 1)])
        await refused_or_dropped(hq, protocol, "plantsync/v1/plant-a/up/state", b"forged")
        await published(plant_a, "plantsync/v1/plant-a/up/state", b"genuine")
        assert (await next_message(plant_a)).payload == b"genuine"
        assert await silent(plant_a)
