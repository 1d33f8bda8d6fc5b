"""OPC UA source: one session, its subscriptions, readings as the server publishes them.

    __aenter__   connect ─▶ read the server's namespaces and limits ─▶ resolve browse paths
                 ─▶ read each tag's data type, EngineeringUnits, EURange  (``opcua_values``)
                 ─▶ CreateSubscription ─▶ CreateMonitoredItems (monitored_item_batch a call,
                    at most the server's MaxMonitoredItemsPerCall), and another subscription
                    each time one holds what the server takes (MaxMonitoredItemsPerSubscription)
                 ─▶ event items on event_notifiers ─▶ ConditionRefresh   (``opcua_events``)
    asyncua publish loop ─▶ _on_publish ─▶ bounded queue (drop oldest) ─▶ readings()
                                       └▶ events ─▶ bounded queue (drop oldest) ─▶ alarms()
    socket closed / BadShutdown / BadTimeout ─────────────────────────▶ readings() raises
    no data change and no keep-alive for stall_timeout ─────────────────▶ readings() raises

The driver reconnects nothing. asyncua's auto-reconnect stays off, and the subscription is
created at the session level rather than through ``Client.create_subscription`` so that the
client's stale-subscription watchdog, which silently re-creates subscriptions, never sees it:
a lost link or a silent server becomes SourceUnavailable, and the agent's supervisor decides.

A server may cap the monitored items of one subscription: it says so in ServerCapabilities
(MaxMonitoredItemsPerSubscription, 0 or absent: no cap), or only by refusing an item with
BadTooManyMonitoredItems. Either way the items go on in a new subscription, as many as it takes;
one callback serves them all (an item's client handle is its index, whatever its subscription).
Setting up the client, translating asyncua's errors and the queue that notices silence are
shared with the Job Control sink, in ``drivers.common.opcua``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from types import TracebackType
from typing import Self, TypeVar

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError, UaStringParsingError

from plantsync.config.plant import OpcUaServerConfig
from plantsync.contracts.alarms import Alarm
from plantsync.contracts.machine import TagMetadata
from plantsync.drivers.base import HistoryGap, Reading
from plantsync.drivers.common.opcua import (
    LiveQueue,
    close_session,
    map_asyncua_exceptions,
    new_client,
)
from plantsync.drivers.common.publish import PublishCounters, PublishRequests
from plantsync.drivers.common.uaserver import ServerInfo, ServerLimits, read_server_info
from plantsync.drivers.opcua_events import AlarmEvents, acknowledge, condition_refresh, event_item
from plantsync.drivers.opcua_history import HistoryReader, Tag, backfill
from plantsync.drivers.opcua_items import (
    Item,
    monitored_item_request,
    node_id_of,
    resolve,
)
from plantsync.drivers.opcua_values import read_metadata, reading
from plantsync.errors import LinkMisconfigured, SourceUnavailable

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")

QUEUE_READINGS = 100_000
"""Readings held for a slow consumer (at least two of every item: a session's initial values
arrive while its items are still being created, before anyone reads); beyond this the oldest
publish responses are dropped. Counted in readings, not responses: a server that caps its
messages at 10 notifications (node-opcua's revision of MaxNotificationsPerPublish) sends ten
times the responses for the same values."""

ALARM_QUEUE = 10_000
"""Alarms held for a slow consumer (the outbox commits each); beyond this the oldest goes,
counted as ``alarms_dropped``; a reconnect's ConditionRefresh reports the retained ones again."""

MAX_NOTIFICATIONS_PER_PUBLISH = 10_000
"""Far above a realistic publishing interval's changes; a small cap (Node-RED's 10) starves
the link, see docs/measured.md. It bounds one batch for servers that honour it."""

INITIAL_PUBLISH_REQUESTS = 2
"""Publish requests kept in flight from the start: one answered while the next waits, so a
response never waits for our round trip. More are added while the server says it holds more
(``MoreNotifications``), up to ``max_publish_requests``; see ``drivers/common/publish.py``."""

_OVERFLOW = 0x0480
"""InfoType DataValue (bit 10) and its Overflow bit (bit 7): the monitored item's queue on the
server was full and discarded a value (OPC UA Part 4, 7.39)."""

_ITEMS_PER_SUBSCRIPTION = ObjectIds.Server_ServerCapabilities_MaxMonitoredItemsPerSubscription


class OpcUaSource:
    """Reads the configured tags of one OPC UA server through one subscription.

    One instance is one connection: after SourceUnavailable the supervisor makes a new one.

    ``dropped`` counts readings discarded because the consumer fell more than
    ``queue_readings`` readings behind (default ``QUEUE_READINGS``, at least two per item; the
    oldest publish responses go first).
    """

    def __init__(self, config: OpcUaServerConfig, *, queue_readings: int | None = None) -> None:
        self._config = config
        self._timeout = config.request_timeout.total_seconds()
        self._items = [Item(machine.id, tag) for machine in config.machines for tag in machine.tags]
        self._queue: LiveQueue[list[Reading]] = LiveQueue(
            config.name,
            size=queue_readings or max(QUEUE_READINGS, 2 * len(self._items)),
            stall_timeout=config.stall_timeout.total_seconds(),
            silence="data change",
            weight=len,
        )
        self._alarm_queue: LiveQueue[Alarm] = LiveQueue(
            config.name,
            size=ALARM_QUEUE,
            stall_timeout=config.stall_timeout.total_seconds(),
            silence="event",
        )
        self._events = AlarmEvents(config.event_notifiers)
        self._client: Client | None = None
        self._subscription_ids: list[int] = []
        self._publisher: PublishRequests | None = None
        self._overflows = 0
        self._server: ServerInfo | None = None
        self._metadata: dict[tuple[str, str], TagMetadata] = {}

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    def counters(self) -> dict[str, int]:
        """``Counted``: values lost on the way (here, on the server) and the server's cap."""
        publishing = self.publishing
        return {
            "dropped": self.dropped,
            "overflows": self._overflows,
            "more_notifications": publishing.more_notifications,
            "publish_requests": publishing.in_flight,
            "subscriptions": len(self._subscription_ids),
            "alarms_dropped": self._alarm_queue.dropped,
        }

    def description(self) -> dict[str, object]:
        """``Described``: the server's endpoint, security, namespace URIs and limits."""
        return self._server.as_dict() if self._server is not None else {}

    def tag_metadata(self) -> dict[tuple[str, str], TagMetadata]:
        """``TagsDescribed``: (machine, tag) -> data type, units, EURange, read on connecting."""
        return dict(self._metadata)

    @property
    def publishing(self) -> PublishCounters:
        """Publish requests in flight and how often the server held more than it sent."""
        return self._publisher.counters if self._publisher else PublishCounters()

    async def __aenter__(self) -> Self:
        try:
            with map_asyncua_exceptions(self.name, f"connecting to {self._config.endpoint}"):
                self._client = await self._connect()
                self._server = await self._bounded(read_server_info(self._client, self._config))
            with map_asyncua_exceptions(self.name, "subscribing"):
                self._items = await self._bounded(
                    resolve(self._client.uaclient.session, self._items, self.name)
                )
                await self._describe(self._client)
                await self._monitor(self._client, await self._items_per_subscription(self._client))
                await self._watch_events(self._client)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._close()

    async def readings(self) -> AsyncIterator[list[Reading]]:
        """Batches of readings, one per publish response; the first carry initial values.

        Raises SourceUnavailable when the link drops or goes silent for ``stall_timeout``.
        """
        while True:
            yield await self._queue.next()

    async def history(
        self, gaps: Sequence[HistoryGap]
    ) -> AsyncIterator[list[Reading] | HistoryGap]:
        """``HistorySource``: the values each gap missed, from the server's history; nothing
        when backfill is off."""
        if self._config.backfill == "off" or self._client is None:
            return
        limits = self._server.limits if self._server is not None else ServerLimits()
        reader = HistoryReader(
            self._client.uaclient.session, limits, rate=self._config.backfill_rate
        )
        with map_asyncua_exceptions(self.name, "reading history"):
            async for found in backfill(reader, self._tags(), gaps):
                yield found

    def _tags(self) -> dict[tuple[str, str], Tag]:
        return {
            (item.machine_id, item.tag.name): Tag(
                item.node_id or node_id_of(item.tag),
                bool(
                    (meta := self._metadata.get((item.machine_id, item.tag.name))) and meta.history
                ),
            )
            for item in self._items
        }

    async def alarms(self) -> AsyncIterator[Alarm]:
        """``AlarmSource``: condition events of ``event_notifiers``, refreshed ones first."""
        while True:
            yield await self._alarm_queue.next()

    async def acknowledge(self, condition_id: str, event_id: bytes, comment: str) -> str:
        """``AlarmAcknowledger``: the condition's Acknowledge method; the status name."""
        if self._client is None:
            raise SourceUnavailable(f"opcua {self.name}: not connected")
        try:
            node = ua.NodeId.from_string(condition_id)
        except (ValueError, UaStringParsingError):
            return "BadNodeIdInvalid"
        with map_asyncua_exceptions(self.name, f"acknowledging {condition_id}"):
            session = self._client.uaclient.session
            status = await self._bounded(acknowledge(session, node, event_id, comment))
        return str(status.name)

    # -- connecting --------------------------------------------------------------------------

    async def _connect(self) -> Client:
        client = await new_client(self._config)
        client.connection_lost_callback = self._connection_lost
        self._client = client  # so _close can tear down a half-open connection
        await self._bounded(client.connect())
        return client

    async def _items_per_subscription(self, client: Client) -> int | None:
        """The server's MaxMonitoredItemsPerSubscription; None when it states no cap."""
        node = client.get_node(ua.NodeId(ua.Int32(_ITEMS_PER_SUBSCRIPTION)))
        try:
            value = await self._bounded(node.read_value())
        except UaStatusCodeError:
            return None  # a server from before OPC UA 1.05 has no such property
        return int(value) if isinstance(value, int) and value > 0 else None

    async def _describe(self, client: Client) -> None:
        """Units, EURange and data type of every tag, once per connection (not per value)."""
        limits = self._server.limits if self._server is not None else ServerLimits()
        node_ids = [item.node_id or node_id_of(item.tag) for item in self._items]
        found = await self._bounded(read_metadata(client, node_ids, limits))
        self._metadata = {
            (item.machine_id, item.tag.name): metadata
            for item, metadata in zip(self._items, found, strict=True)
            if metadata is not None
        }

    async def _subscribe(self, client: Client) -> int:
        config = self._config
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=config.publishing_interval.total_seconds() * 1000,
            RequestedLifetimeCount=config.lifetime_count,
            RequestedMaxKeepAliveCount=config.keepalive_count,
            MaxNotificationsPerPublish=MAX_NOTIFICATIONS_PER_PUBLISH,
            PublishingEnabled=True,
        )
        session = client.uaclient.session
        if self._publisher is None:
            self._publisher = PublishRequests(
                session,
                self._on_publish,
                link=self.name,
                initial=min(INITIAL_PUBLISH_REQUESTS, config.max_publish_requests),
                maximum=config.max_publish_requests,
            )
        result = await self._bounded(
            session.create_subscription(params, callback=self._publisher.deliver)
        )
        self._subscription_ids.append(int(result.SubscriptionId))
        self._publisher.start(int(result.SubscriptionId))
        _logger.debug(
            "opcua %s: subscription %s, publishing %s ms, keep-alive x%s, lifetime x%s",
            self.name,
            result.SubscriptionId,
            result.RevisedPublishingInterval,
            result.RevisedMaxKeepAliveCount,
            result.RevisedLifetimeCount,
        )
        self._queue.heard()  # the stall timeout counts from a working subscription
        return int(result.SubscriptionId)

    async def _monitor(self, client: Client, per_subscription: int | None) -> None:
        """CreateMonitoredItems in batches (servers cap the items per call), in a new
        subscription each time one is full: at ``per_subscription`` items, or when the server
        refuses one with BadTooManyMonitoredItems."""
        subscription_id, held, start = await self._subscribe(client), 0, 0
        while start < len(self._items):
            room = self._config.monitored_item_batch
            if self._server is not None and self._server.limits.max_monitored_items_per_call:
                room = min(room, self._server.limits.max_monitored_items_per_call)
            if per_subscription is not None:
                room = min(room, per_subscription - held)
            if room <= 0:
                subscription_id, held = await self._subscribe(client), 0
                continue
            created = await self._create(client, subscription_id, start, room)
            if created == 0 and held == 0:
                raise LinkMisconfigured(
                    f"opcua {self.name}: a new subscription takes no monitored item "
                    "(BadTooManyMonitoredItems)"
                )
            if created < min(room, len(self._items) - start):  # the server's cap, unstated
                per_subscription, room = held + created, 0
            start, held = start + created, held + created
        _logger.debug(
            "opcua %s: %d items in %d subscriptions",
            self.name,
            len(self._items),
            len(self._subscription_ids),
        )

    async def _create(self, client: Client, subscription_id: int, start: int, size: int) -> int:
        """Monitor up to ``size`` items from ``start``; how many the subscription took before
        it refused one as too many."""
        batch = self._items[start : start + size]
        params = ua.CreateMonitoredItemsParameters(
            SubscriptionId=subscription_id,
            # Only the source timestamp is read (a reading's source_time); leaving out the
            # server's saves 8 of 34 bytes and a sixth of the decoding of every data change
            # (python -m bench.micro_ingest), the largest cost in the agent's profile.
            TimestampsToReturn=ua.TimestampsToReturn.Source,
            ItemsToCreate=[
                monitored_item_request(start + offset, item, self._config.publishing_interval)
                for offset, item in enumerate(batch)
            ],
        )
        results = await self._bounded(client.uaclient.session.create_monitored_items(params))
        for taken, (item, result) in enumerate(zip(batch, results, strict=True)):
            if result.StatusCode.value == StatusCodes.BadTooManyMonitoredItems:
                return taken  # the rest go to another subscription
            if not result.StatusCode.is_good():
                raise LinkMisconfigured(
                    f"opcua {self.name}: tag {item.label}: cannot monitor node "
                    f"{item.node_id.to_string() if item.node_id else '?'}: "
                    f"{result.StatusCode.name}"
                )
        return len(batch)

    async def _watch_events(self, client: Client) -> None:
        """Event items on the configured notifiers, then ConditionRefresh: the server reports
        every condition it retains again, so what changed while we were away is known."""
        notifiers = [ua.NodeId.from_string(text) for text in self._config.event_notifiers]
        if not notifiers or not self._subscription_ids:
            return
        subscription_id = self._subscription_ids[0]
        params = ua.CreateMonitoredItemsParameters(
            SubscriptionId=subscription_id,
            TimestampsToReturn=ua.TimestampsToReturn.Neither,
            ItemsToCreate=[event_item(index, node) for index, node in enumerate(notifiers)],
        )
        session = client.uaclient.session
        results = await self._bounded(session.create_monitored_items(params))
        for notifier, result in zip(self._config.event_notifiers, results, strict=True):
            if not result.StatusCode.is_good():
                raise LinkMisconfigured(
                    f"opcua {self.name}: event_notifiers {notifier}: cannot subscribe to its"
                    f" events: {result.StatusCode.name}"
                )
        await self._bounded(condition_refresh(session, subscription_id))

    # -- receiving ---------------------------------------------------------------------------

    def _on_publish(self, result: ua.PublishResult) -> None:
        """Called by asyncua's publish loop for every response, keep-alives included."""
        self._queue.heard()
        self._alarm_queue.heard()
        batch: list[Reading] = []
        for notification in result.NotificationMessage.NotificationData or []:
            if isinstance(notification, ua.DataChangeNotification):
                batch.extend(self._readings(notification))
            elif isinstance(notification, ua.EventNotificationList):
                for alarm in self._events.alarms(notification):
                    self._alarm_queue.put(alarm)
            elif isinstance(notification, ua.StatusChangeNotification):
                self._queue.status_changed(notification.Status)
                self._alarm_queue.status_changed(notification.Status)
        if batch:
            self._queue.put(batch)

    def _readings(self, notification: ua.DataChangeNotification) -> Iterator[Reading]:
        for monitored in notification.MonitoredItems:
            if not 0 <= monitored.ClientHandle < len(self._items):
                continue
            item = self._items[monitored.ClientHandle]
            status = monitored.Value.StatusCode
            overflow = status is not None and status.value & _OVERFLOW == _OVERFLOW
            self._overflows += overflow  # the server's queue for this item discarded values
            yield reading(item.machine_id, item.tag.name, monitored.Value, overflow=overflow)

    async def _connection_lost(self, exc: Exception) -> None:
        await self._queue.connection_lost(exc)
        await self._alarm_queue.connection_lost(exc)

    # -- closing -----------------------------------------------------------------------------

    async def _close(self) -> None:
        """Delete the subscription and disconnect, each step bounded, whatever the state."""
        client, self._client = self._client, None
        if client is None:
            return
        subscription_ids, self._subscription_ids = self._subscription_ids, []
        if self._publisher is not None:
            await self._publisher.stop()
        await close_session(client, subscription_ids)

    async def _bounded(self, awaitable: Awaitable[_T]) -> _T:
        async with asyncio.timeout(self._timeout):
            return await awaitable
