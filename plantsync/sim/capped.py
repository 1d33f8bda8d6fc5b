"""asyncua servers that honour a cap on notifications per message, as node-opcua servers do.

asyncua's server puts every queued notification into one NotificationMessage, whatever the
subscription's MaxNotificationsPerPublish (opcua-asyncio issue #1931), so a client tested only
against it never meets a capped server. Inside ``notifications_capped(limit)``, subscriptions
that asyncua servers of this process create send at most ``limit`` data changes per message,
set ``MoreNotifications`` while they hold more, and answer as many messages per publishing
cycle as the client has Publish requests queued (OPC UA Part 4 §5.13.5) — no more: the rest
waits for the next cycle.

Inside ``monitored_items_capped(limit)``, a subscription takes at most ``limit`` monitored items
and refuses the rest with BadTooManyMonitoredItems, as servers that state
MaxMonitoredItemsPerSubscription do (``server_of_variables`` states it, or keeps it unsaid).

Only the server side changes; the agent's client code in the same process is untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server import subscription_service
from asyncua.server.internal_subscription import InternalSubscription
from asyncua.server.monitored_item_service import MonitoredItemService
from asyncua.server.server import Server
from asyncua.server.uaprocessor import PublishRequestData
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

_ITEMS_PER_SUBSCRIPTION = ObjectIds.Server_ServerCapabilities_MaxMonitoredItemsPerSubscription


class CappedSubscription(InternalSubscription):
    """An InternalSubscription that sends at most ``limit`` data changes per message."""

    limit = 10

    def has_published_results(self) -> bool:
        return bool(self._triggered_datachanges) or super().has_published_results()

    def _pop_triggered_datachanges(self, result: ua.PublishResult) -> None:
        queued = [item for items in self._triggered_datachanges.values() for item in items]
        if not queued:
            return
        sent, held = queued[: self.limit], queued[self.limit :]
        # Keyed by the first held item's handle: the dict only groups what waits.
        self._triggered_datachanges = {held[0].ClientHandle: held} if held else {}
        result.NotificationMessage.NotificationData.append(
            ua.DataChangeNotification(MonitoredItems=sent)
        )

    def _pop_publish_result(self) -> ua.PublishResult:
        result = super()._pop_publish_result()
        result.MoreNotifications = bool(self._triggered_datachanges)
        return result

    async def publish_results(self, requestdata: PublishRequestData | None = None) -> bool:
        """At each publishing cycle, one message per queued Publish request while more
        notifications wait. A request that arrives between cycles is queued for the next one
        (returning False leaves it to the processor's queue), as node-opcua does: a client with
        one request in flight gets one message per cycle."""
        if requestdata is not None:
            return False
        sent = await super().publish_results()
        while sent and self._triggered_datachanges and not self._closing:
            sent = await super().publish_results()
        return sent


@contextlib.contextmanager
def notifications_capped(limit: int) -> Iterator[None]:
    """Subscriptions created inside the block send at most ``limit`` data changes a message."""
    names = vars(subscription_service)  # the name its create_subscription looks up
    original = names["InternalSubscription"]
    CappedSubscription.limit = limit
    names["InternalSubscription"] = CappedSubscription
    try:
        yield
    finally:
        names["InternalSubscription"] = original


class _CappedItems(MonitoredItemService):
    """A subscription's monitored items, at most ``limit`` of them."""

    limit = 100

    async def create_monitored_items(
        self, params: ua.CreateMonitoredItemsParameters
    ) -> list[ua.MonitoredItemCreateResult]:
        room = self.limit - len(self._monitored_items)
        taken = await super().create_monitored_items(
            dataclasses.replace(params, ItemsToCreate=params.ItemsToCreate[: max(0, room)])
        )
        refused = ua.StatusCode(ua.UInt32(StatusCodes.BadTooManyMonitoredItems))
        return taken + [
            ua.MonitoredItemCreateResult(StatusCode=refused)
            for _ in params.ItemsToCreate[len(taken) :]
        ]


@contextlib.contextmanager
def monitored_items_capped(limit: int) -> Iterator[None]:
    """Subscriptions created inside the block take at most ``limit`` monitored items; stacks
    on ``notifications_capped``."""
    names = vars(subscription_service)
    original = names["InternalSubscription"]

    def __init__(self: InternalSubscription, *args: Any, **kwargs: Any) -> None:
        original.__init__(self, *args, **kwargs)
        self.monitored_item_srv = _CappedItems(self, self.monitored_item_srv.aspace)

    _CappedItems.limit = limit
    names["InternalSubscription"] = type(
        "ItemCappedSubscription", (original,), {"__init__": __init__}
    )
    try:
        yield
    finally:
        names["InternalSubscription"] = original


@contextlib.asynccontextmanager
async def server_of_variables(
    port: int,
    items: int,
    *,
    cap: int | None,
    items_per_subscription: int | None = None,
    stated: bool = True,
) -> AsyncIterator[tuple[str, list[Node]]]:
    """A server on 127.0.0.1:``port`` with ``items`` Int variables (``v0`` …) under one object,
    capped at ``cap`` data changes a message (None: asyncua's own, uncapped) and at
    ``items_per_subscription`` monitored items a subscription (None: no cap; ``stated``: in
    ServerCapabilities, else only by refusing); its endpoint and the variables, for a test or
    a bench to change."""
    endpoint = f"opc.tcp://127.0.0.1:{port}/capped/"
    server = Server()
    await server.init()
    server.set_endpoint(endpoint)
    namespace = await server.register_namespace("urn:plantsync:capped")
    machine = await server.nodes.objects.add_object(namespace, "Machine")
    variables = [await machine.add_variable(namespace, f"v{n}", 0) for n in range(items)]
    with contextlib.ExitStack() as stack:
        if cap is not None:
            stack.enter_context(notifications_capped(cap))
        if items_per_subscription is not None:
            stack.enter_context(monitored_items_capped(items_per_subscription))
            if stated:
                node = server.get_node(ua.NodeId(ua.Int32(_ITEMS_PER_SUBSCRIPTION)))
                await node.write_value(ua.Variant(items_per_subscription, ua.VariantType.UInt32))
        async with server:
            yield endpoint, variables
