"""The Job Control sink: one session with a Job Control server (see the package docstring)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from pydantic import ValidationError

from plantsync.config.plant import JobControlConfig
from plantsync.contracts.orders import OrderStatus, ProductionConfirmation
from plantsync.contracts.schedule import ProductionOrder
from plantsync.drivers.base import OrderChange, PlantVerdict
from plantsync.drivers.common.opcua import (
    LiveQueue,
    close_session,
    map_asyncua_exceptions,
    new_client,
)
from plantsync.drivers.jobcontrol import codec, isa95
from plantsync.drivers.jobcontrol.discovery import JobControlNodes, discover
from plantsync.drivers.jobcontrol.events import Entries, Event, ListDiff, job_order_id
from plantsync.drivers.jobcontrol.plan import (
    EVERY_METHOD,
    Call,
    MissingMethod,
    Outcome,
    arguments,
    outcome,
    plan,
)
from plantsync.errors import LinkMisconfigured, SourceUnavailable

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")

QUEUE_EVENTS = 1000
"""Events held for a slow consumer; beyond this the oldest is dropped (counted in ``dropped``).
A dropped state is not lost for good: the next session starts with every order's state."""

KEEPALIVE_COUNT = 10
LIFETIME_COUNT = 30

_INCOMPATIBLE = frozenset(
    {
        StatusCodes.BadMethodInvalid,
        StatusCodes.BadArgumentsMissing,
        StatusCodes.BadTooManyArguments,
        StatusCodes.BadInvalidArgument,
        StatusCodes.BadTypeMismatch,
        StatusCodes.BadNotImplemented,
        StatusCodes.BadNotSupported,
    }
)
"""Call results that mean the server's Job Control is not the one this driver speaks."""


class JobControlSink:
    """Delivers order changes to an ISA-95 Job Control server and reports what it does.

    One instance is one connection: after SourceUnavailable the supervisor makes a new one.
    ``dropped`` counts events discarded because ``events()`` fell ``QUEUE_EVENTS`` behind.
    """

    def __init__(self, config: JobControlConfig, *, queue_events: int = QUEUE_EVENTS) -> None:
        self._config = config
        self._timeout = config.request_timeout.total_seconds()
        self._client: Client | None = None
        self._nodes: JobControlNodes | None = None
        self._events: LiveQueue[Event] = LiveQueue(
            config.name, size=queue_events, stall_timeout=config.stall_timeout.total_seconds()
        )
        self._diff = ListDiff(config.name, self._events)
        self._read = Entries(codec.decode_job_order_and_state, job_order_id, config.name)
        """JobOrderList as last read: each apply reads the whole list, and decodes what is new."""
        self._subscription_id: int | None = None
        self._pending: dict[str, Outcome] = {}
        """Job orders this session changed whose change the subscription has not reported."""

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def dropped(self) -> int:
        return self._events.dropped

    def counters(self) -> dict[str, int]:
        """``Counted``: job order states and results the event queue had to discard."""
        return {"dropped": self.dropped}

    @property
    def nodes(self) -> JobControlNodes | None:
        """What this session found: the receiver, its methods, the lists (None before)."""
        return self._nodes

    async def __aenter__(self) -> Self:
        try:
            with map_asyncua_exceptions(self.name, f"connecting to {self._config.endpoint}"):
                self._client = await new_client(self._config)
                self._client.connection_lost_callback = self._events.connection_lost
                await self._bounded(self._client.connect())
            with map_asyncua_exceptions(self.name, "loading the data type definitions"):
                # ua.ISA95JobOrderDataType and the rest, as this server defines them.
                await self._bounded(self._client.load_data_type_definitions())
            with map_asyncua_exceptions(self.name, "browsing the job order receiver"):
                await self._browse(self._client)
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

    async def apply(self, change: OrderChange) -> PlantVerdict:
        """Deliver one change; see the module docstring for the calls it makes."""
        try:
            order = ProductionOrder.model_validate(change.body["order"])
        except (KeyError, ValidationError) as exc:
            return PlantVerdict(applied=False, reason=f"jobcontrol: no valid order: {exc}"[:300])
        for attempt in range(2):
            try:
                return_status, from_held = await self._reconcile(change, order, fresh=attempt > 0)
            except MissingMethod as exc:
                return PlantVerdict(applied=False, reason=f"jobcontrol: {exc}")
            retry = from_held or return_status & isa95.ReturnStatus.INVALID_JOB_ORDER_STATUS
            if return_status != isa95.ReturnStatus.NO_ERROR and retry and not attempt:
                continue  # planned from a list the server has moved on from: read it, plan again
            break
        if return_status == isa95.ReturnStatus.NO_ERROR:
            return PlantVerdict(applied=True)
        return PlantVerdict(applied=False, reason=f"jobcontrol: {isa95.describe(return_status)}")

    async def events(self) -> AsyncIterator[OrderStatus | ProductionConfirmation]:
        """Order status and confirmations as the server reports them; the first describe every
        job order it holds. Raises SourceUnavailable when the link drops or goes silent."""
        while True:
            yield await self._events.next()

    async def job_orders(self) -> dict[str, isa95.ISA95JobOrderAndStateDataType]:
        """The server's JobOrderList now, by job order id; an entry that does not parse is left
        out, as the events leave it out."""
        client, nodes = self._connected()
        with map_asyncua_exceptions(self.name, "reading JobOrderList"):
            value = await self._bounded(client.get_node(nodes.job_order_list).read_value())
        return {entry.JobOrder.JobOrderID: entry for entry in self._read.parse(value or [])}

    # -- applying ----------------------------------------------------------------------------

    async def _reconcile(
        self, change: OrderChange, order: ProductionOrder, *, fresh: bool
    ) -> tuple[int, bool]:
        """Plan and call; the first refusal's ReturnStatus (else NoError), and whether the plan
        came from the list the subscription holds rather than from a read."""
        current, from_held = await self._current(order.order_id, fresh=fresh)
        _, nodes = self._connected()
        offered = frozenset(nodes.methods)
        calls = plan(change, order, current, offered, self._config.release_method)
        before = self._pending.get(order.order_id)
        if calls:
            self._pending[order.order_id] = outcome(calls, current, order.revision)
        for done, call in enumerate(calls):
            return_status = await self._call(call)
            if return_status != isa95.ReturnStatus.NO_ERROR:
                _logger.info(
                    "jobcontrol %s: %s %s refused: %s",
                    self.name,
                    call.method,
                    order.order_id,
                    isa95.explain(return_status),
                )
                self._settle(order.order_id, calls[:done], current, order.revision, before)
                return return_status, from_held
        return isa95.ReturnStatus.NO_ERROR, from_held

    async def _current(
        self, job_order_id: str, *, fresh: bool
    ) -> tuple[isa95.ISA95JobOrderAndStateDataType | None, bool]:
        """The job order as the subscription last reported it, unless calls of this session
        are not in that report yet (or ``fresh``): then as a read of JobOrderList shows it.
        Planning from the report saves reading and decoding the whole list per change, which
        the protocol makes O(job orders held) (docs/performance.md, roundtrip)."""
        held = self._diff.held
        if not fresh and held is not None and job_order_id not in self._pending:
            return held.get(job_order_id), True
        return (await self.job_orders()).get(job_order_id), False

    def _settle(
        self,
        job_order_id: str,
        accepted: list[Call],
        current: isa95.ISA95JobOrderAndStateDataType | None,
        revision: int,
        before: Outcome | None,
    ) -> None:
        """After a refusal: wait for what the accepted calls did, or for what was awaited."""
        if accepted:
            self._pending[job_order_id] = outcome(accepted, current, revision)
        elif before is not None:
            self._pending[job_order_id] = before
        else:
            self._pending.pop(job_order_id, None)

    async def _call(self, call: Call) -> int:
        """One method call; its ReturnStatus. A Bad result never carries one (B.2): mapped."""
        client, nodes = self._connected()
        request = ua.CallMethodRequest(
            ObjectId=nodes.receiver,
            MethodId=nodes.methods[call.method],
            InputArguments=arguments(call),
        )
        with map_asyncua_exceptions(self.name, f"calling {call.method}"):
            [result] = await self._bounded(client.uaclient.call([request]))
            if result.StatusCode.value in _INCOMPATIBLE:
                raise LinkMisconfigured(
                    f"opcua {self.name}: {call.method} refused its arguments: "
                    f"{result.StatusCode.name} (not the Job Control this driver speaks)"
                )
            if result.StatusCode.is_bad():  # Uncertain carries a refusal's ReturnStatus
                result.StatusCode.check()
        outputs = result.OutputArguments or []
        # Int64 in the nodeset, UInt64 in the spec's text: the same 64 bits either way.
        return int(outputs[-1].Value) & (1 << 64) - 1 if outputs else isa95.ReturnStatus.NO_ERROR

    # -- connecting --------------------------------------------------------------------------

    async def _browse(self, client: Client) -> None:
        """Find the receiver and the provider, then subscribe to both lists."""
        self._nodes = nodes = await self._bounded(
            discover(
                client,
                self.name,
                self._config.job_order_receiver,
                self._config.job_response_provider,
            )
        )
        responses = nodes.job_order_response_list
        if responses is None:
            _logger.warning("jobcontrol %s: no JobOrderResponseList: no confirmations", self.name)
        missing = sorted(EVERY_METHOD - set(nodes.methods))
        if missing:
            _logger.info("jobcontrol %s: the receiver does not offer %s", self.name, missing)
        watched = [nodes.job_order_list] + ([responses] if responses is not None else [])
        await self._subscribe(client, watched)

    async def _subscribe(self, client: Client, nodes: list[ua.NodeId]) -> None:
        session = client.uaclient.session
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=self._config.publishing_interval.total_seconds() * 1000,
            RequestedLifetimeCount=LIFETIME_COUNT,
            RequestedMaxKeepAliveCount=KEEPALIVE_COUNT,
            PublishingEnabled=True,
        )
        # At the session level, as OpcUaSource does: asyncua's watchdog never re-creates it.
        result = await self._bounded(session.create_subscription(params, self._on_publish))
        self._subscription_id = int(result.SubscriptionId)
        items = [
            ua.MonitoredItemCreateRequest(
                ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=AttributeIds.Value),
                MonitoringMode=ua.MonitoringMode.Reporting,
                # Every list value is kept: a state the order passed through is a state HQ sees.
                RequestedParameters=ua.MonitoringParameters(
                    ClientHandle=handle, SamplingInterval=0, QueueSize=100, DiscardOldest=True
                ),
            )
            for handle, node in enumerate(nodes)
        ]
        created = await self._bounded(
            session.create_monitored_items(
                ua.CreateMonitoredItemsParameters(
                    SubscriptionId=self._subscription_id,
                    TimestampsToReturn=ua.TimestampsToReturn.Both,
                    ItemsToCreate=items,
                )
            )
        )
        for node, item in zip(nodes, created, strict=True):
            if not item.StatusCode.is_good():
                raise LinkMisconfigured(
                    f"opcua {self.name}: cannot monitor {node.to_string()}: {item.StatusCode.name}"
                )

    # -- receiving ---------------------------------------------------------------------------

    def _on_publish(self, result: ua.PublishResult) -> None:
        self._events.heard()
        changes: list[tuple[datetime, int, list[Any]]] = []
        for notification in result.NotificationMessage.NotificationData or []:
            if isinstance(notification, ua.DataChangeNotification):
                changes += [_change(item) for item in notification.MonitoredItems]
            elif isinstance(notification, ua.StatusChangeNotification):
                self._events.status_changed(notification.Status)
        # One response groups its notifications by item: in time order, HQ sees the partial
        # confirmations before the Ended that followed them.
        for at, handle, value in sorted(changes, key=lambda change: change[0]):
            if handle == 0:
                self._diff.job_order_list(value, at)
                self._reported()
            else:
                self._diff.job_order_response_list(value, at)

    def _reported(self) -> None:
        held = self._diff.held or {}
        for key, expected in list(self._pending.items()):
            if expected.seen_in(held.get(key)):
                del self._pending[key]

    # -- closing -----------------------------------------------------------------------------

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        subscription_id, self._subscription_id = self._subscription_id, None
        await close_session(client, [subscription_id] if subscription_id is not None else [])
        self._events.lost(SourceUnavailable(f"opcua {self.name}: closed"))

    def _connected(self) -> tuple[Client, JobControlNodes]:
        if self._client is None or self._nodes is None:
            raise SourceUnavailable(f"opcua {self.name}: not connected")
        return self._client, self._nodes

    async def _bounded(self, awaitable: Awaitable[_T]) -> _T:
        async with asyncio.timeout(self._timeout):
            return await awaitable


def _change(item: ua.MonitoredItemNotification) -> tuple[datetime, int, list[Any]]:
    data = item.Value
    value = data.Value.Value if data.Value is not None else None
    at = _utc(data.SourceTimestamp or data.ServerTimestamp)
    return at, item.ClientHandle, list(value) if isinstance(value, list) else []


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
