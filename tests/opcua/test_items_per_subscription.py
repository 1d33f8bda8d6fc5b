"""Against a server that caps the monitored items of one subscription: the source spreads its
items over as many subscriptions as it takes, whether the server states its cap
(ServerCapabilities.MaxMonitoredItemsPerSubscription) or only refuses the item beyond it
(BadTooManyMonitoredItems), and every item's changes arrive.

The server is a real asyncua server with ``sim.capped.monitored_items_capped``."""

from __future__ import annotations

import pytest

from plantsync.drivers.opcua import OpcUaSource
from plantsync.sim.capped import monitored_items_capped, server_of_variables
from tests.fixtures.opcua import free_port
from tests.opcua.test_capped_server import ITEMS, _burst, _config, _until_all_read

PER_SUBSCRIPTION = 30


@pytest.mark.parametrize("stated", [True, False], ids=["stated", "refused-only"])
async def test_items_beyond_the_servers_cap_go_to_further_subscriptions(stated: bool) -> None:
    server = server_of_variables(
        free_port(), ITEMS, cap=None, items_per_subscription=PER_SUBSCRIPTION, stated=stated
    )
    async with server as (endpoint, variables):
        source = OpcUaSource(_config(endpoint, variables, max_publish_requests=4))
        async with source:
            await _until_all_read(source, 0)  # every item's initial value
            await _burst(variables, 1)
            await _until_all_read(source, 1)  # every item's change, from every subscription
            counters = source.counters()

    assert counters["subscriptions"] == -(-ITEMS // PER_SUBSCRIPTION)  # 4: 30 + 30 + 30 + 10
    assert counters["dropped"] == 0


async def test_without_a_cap_one_subscription_holds_every_item() -> None:
    async with server_of_variables(free_port(), ITEMS, cap=None) as (endpoint, variables):
        source = OpcUaSource(_config(endpoint, variables, max_publish_requests=4))
        async with source:
            await _until_all_read(source, 0)
            counters = source.counters()

    assert counters["subscriptions"] == 1


def test_the_item_cap_is_undone_after_the_block() -> None:
    from asyncua.server import subscription_service
    from asyncua.server.internal_subscription import InternalSubscription

    names = vars(subscription_service)
    with monitored_items_capped(5):
        assert names["InternalSubscription"] is not InternalSubscription
    assert names["InternalSubscription"] is InternalSubscription
