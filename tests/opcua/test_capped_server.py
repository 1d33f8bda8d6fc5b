"""Against a server that caps its notifications per message (as node-opcua servers do): the
source keeps more Publish requests in flight while the server holds more, so a burst arrives in
one publishing cycle instead of ten, within the limits the server and the config set.

The server is a real asyncua server with ``sim.capped`` (asyncua alone ignores the cap)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import timedelta

import pytest
from asyncua import ua
from asyncua.common.node import Node
from asyncua.ua.uaerrors import BadNoSubscription, BadTooManyPublishRequests

from plantsync.config.plant import MachineConfig, OpcUaServerConfig, TagConfig
from plantsync.drivers.base import Reading
from plantsync.drivers.common.publish import PublishRequests
from plantsync.drivers.opcua import OpcUaSource
from plantsync.sim.capped import notifications_capped, server_of_variables
from tests.fixtures.opcua import free_port
from tests.opcua.support import WAIT

ITEMS = 100
CAP = 10
DEFAULT_MAX = OpcUaServerConfig.model_fields["max_publish_requests"].default


def capped_server() -> contextlib.AbstractAsyncContextManager[tuple[str, list[Node]]]:
    """A server with ``ITEMS`` variables whose subscriptions send ``CAP`` changes a message."""
    return server_of_variables(free_port(), ITEMS, cap=CAP)


def _config(endpoint: str, variables: list[Node], max_publish_requests: int) -> OpcUaServerConfig:
    tags = [
        TagConfig(name=f"v{n}", node_id=variable.nodeid.to_string())
        for n, variable in enumerate(variables)
    ]
    return OpcUaServerConfig(
        name="capped",
        endpoint=endpoint,
        publishing_interval=timedelta(milliseconds=200),
        max_publish_requests=max_publish_requests,
        machines=[MachineConfig(id="m", tags=tags)],
    )


async def _burst(variables: list[Node], value: int) -> None:
    """Every variable changes once, at the same moment."""
    for variable in variables:
        await variable.write_value(ua.Variant(value, ua.VariantType.Int64))


async def _until_all_read(source: OpcUaSource, value: int) -> int:
    """Publish responses it took until every item reported ``value``."""
    seen: set[str] = set()
    batches = 0
    readings = source.readings()
    async with asyncio.timeout(WAIT * 2):
        while len(seen) < ITEMS:
            batch: list[Reading] = await anext(readings)
            batches += 1
            seen.update(r.tag for r in batch if r.value == value)
    return batches


async def test_a_burst_larger_than_the_cap_brings_more_publish_requests_in_flight() -> None:
    async with capped_server() as (endpoint, variables):
        config = _config(endpoint, variables, max_publish_requests=20)
        async with OpcUaSource(config) as source:
            await _until_all_read(source, 0)  # the initial values, ten messages of ten
            await _burst(variables, 1)
            batches = await _until_all_read(source, 1)
            publishing = dataclasses.replace(source.publishing)  # as it was while connected

    assert batches >= ITEMS // CAP  # the server really capped its messages
    assert publishing.more_notifications >= 1
    assert 2 < publishing.in_flight <= publishing.maximum <= 20  # grown from the initial two


async def test_the_configured_maximum_bounds_the_requests_in_flight() -> None:
    async with capped_server() as (endpoint, variables):
        config = _config(endpoint, variables, max_publish_requests=1)
        async with OpcUaSource(config) as source:
            await _until_all_read(source, 0)
            await _burst(variables, 1)
            await _until_all_read(source, 1)
            publishing = dataclasses.replace(source.publishing)

    assert publishing.more_notifications >= 1
    assert (publishing.in_flight, publishing.maximum) == (1, 1)


@pytest.mark.parametrize("limit", [1, 3])
def test_the_cap_is_undone_after_the_block(limit: int) -> None:
    from asyncua.server import subscription_service
    from asyncua.server.internal_subscription import InternalSubscription

    names = vars(subscription_service)
    with notifications_capped(limit):
        assert names["InternalSubscription"] is not InternalSubscription
    assert names["InternalSubscription"] is InternalSubscription


class _RefusingSession:
    """A session whose server takes two Publish requests at most: a third is refused with
    BadTooManyPublishRequests (what asyncua's and node-opcua's servers answer past their limit).
    A stand-in at the seam: the reaction of PublishRequests is what is under test."""

    def __init__(self) -> None:
        self.waiting = 0
        self.release = asyncio.Event()

    async def publish(self, acks: list[ua.SubscriptionAcknowledgement]) -> ua.PublishResponse:
        if self.waiting >= 2:
            raise BadTooManyPublishRequests()  # type: ignore[no-untyped-call]
        self.waiting += 1
        try:
            await self.release.wait()
        finally:
            self.waiting -= 1
        raise BadNoSubscription()  # type: ignore[no-untyped-call]


async def test_a_server_that_refuses_more_requests_lowers_the_maximum() -> None:
    session = _RefusingSession()
    publisher = PublishRequests(
        session,  # type: ignore[arg-type]
        lambda result: None,
        link="refusing",
        initial=4,
        maximum=10,
    )
    publisher.start(subscription_id=1)
    async with asyncio.timeout(WAIT):
        while publisher.counters.maximum == 10:  # noqa: ASYNC110 - the loops run on their own
            await asyncio.sleep(0.01)
    assert publisher.counters.maximum < 4
    session.release.set()
    await publisher.stop()


async def test_initial_values_in_small_messages_wait_for_a_late_reader_without_loss() -> None:
    # node-opcua revises MaxNotificationsPerPublish to its cap: 1,500 initial values come as
    # 150 messages while the session is still being set up, before anyone reads. The queue is
    # bounded in readings, so a hundred-message bound cannot cost the first 500.
    items = 1_500
    async with server_of_variables(free_port(), items, cap=CAP) as (endpoint, variables):
        config = _config(endpoint, variables, max_publish_requests=DEFAULT_MAX)
        config = config.model_copy(update={"publishing_interval": timedelta(milliseconds=50)})
        async with OpcUaSource(config) as source:
            await asyncio.sleep(3.0)  # the reader is late: every message has arrived by now
            seen: set[str] = set()
            readings = source.readings()
            async with asyncio.timeout(WAIT):
                while len(seen) < items:
                    seen.update(reading.tag for reading in await anext(readings))
            dropped, in_flight = source.dropped, source.publishing.in_flight

    assert dropped == 0
    assert len(seen) == items
    # 150 messages said MoreNotifications: by default the requests grow past 10 (node-opcua
    # answers queued requests once per cycle; 10 at cap 10 carried a third of 1,000/s).
    assert 10 < in_flight <= DEFAULT_MAX
