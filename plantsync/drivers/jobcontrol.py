"""OPC UA ISA-95 Job Control (OPC 10031-4 v2): schedule changes go to a JobOrderReceiver, job
order states and job responses come back as order status and production confirmations.

    __aenter__   connect ─▶ browse the receiver and the response provider ─▶ subscribe to
                 JobOrderList and JobOrderResponseList
    apply        read JobOrderList ─▶ plan the calls that take the job order from where it is
                 to where the change wants it ─▶ call them in order, the first refusal ends it
    events       JobOrderList / JobOrderResponseList changes ─▶ diff ─▶ bounded queue (drop
                 oldest) ─▶ OrderStatus, ProductionConfirmation; the link lost ─▶ raises

How a change becomes method calls, given the job order's state on the server:

    the order's request state     the job order is ...            calls
    Released                      absent                          Store, Start
    Held, Forecast                absent                          Store
    any                           stored at an older revision     Update (before Start, after
                                  (NotAllowedToStart,             RevokeStart); a content change
                                  AllowedToStart)                 to a started one: Update, which
                                                                  the server refuses
    Released (hold-release)       NotAllowedToStart / Interrupted Start / Resume
    Held (hold)                   AllowedToStart / Running        RevokeStart / Pause
    Cancelled                     not started / Running, Inter-   Cancel / Abort; nothing when
                                  rupted / absent                 Aborted; Cancel when absent
                                                                  (refused: UnknownJobOrderId)

Idempotency: the job order carries its revision (a JobOrderParameter), and every call is planned
from the job order's state as the server reports it just before: a change that already took
effect plans no calls and is applied, one that took effect halfway plans the rest. A call
refused with InvalidJobOrderStatus (the machine started the order meanwhile) is planned once
more from the new state.

A refusal (a ReturnStatus other than NoError) is PlantVerdict(applied=False, reason="jobcontrol:
<bits>"); a lost link or a timeout is SourceUnavailable; a refused identity or a server without
the nodes this driver needs is LinkMisconfigured. The driver reconnects nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self, TypeVar

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStringParsingError
from pydantic import ValidationError

from plantsync.config.plant import JobControlConfig
from plantsync.contracts.orders import JobOrderState, OrderStatus, ProductionConfirmation
from plantsync.contracts.schedule import ProductionOrder, RequestState
from plantsync.drivers import isa95
from plantsync.drivers.base import OrderChange, PlantVerdict
from plantsync.drivers.common.opcua import (
    LiveQueue,
    close_session,
    map_asyncua_exceptions,
    new_client,
)
from plantsync.drivers.jobcontrol_events import Entries, Event, ListDiff
from plantsync.errors import LinkMisconfigured, SourceUnavailable

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")

QUEUE_EVENTS = 1000
"""Events held for a slow consumer; beyond this the oldest is dropped (counted in ``dropped``).
A dropped state is not lost for good: the next session starts with every order's state."""

KEEPALIVE_COUNT = 10
LIFETIME_COUNT = 30

_PREPARED = (JobOrderState.NOT_ALLOWED_TO_START, JobOrderState.ALLOWED_TO_START)
_STARTED = (JobOrderState.RUNNING, JobOrderState.INTERRUPTED)
_CONTENT_CHANGES = frozenset(
    {"schedule.release", "schedule.revision", "schedule.snapshot", "order.material-substitution"}
)
_TO_RELEASED = {
    JobOrderState.NOT_ALLOWED_TO_START: "Start",
    JobOrderState.INTERRUPTED: "Resume",
}
_TO_HELD = {JobOrderState.ALLOWED_TO_START: "RevokeStart", JobOrderState.RUNNING: "Pause"}
"""For an order that must not run (Held, Forecast): the call that stops it, by state."""
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


@dataclass(frozen=True, slots=True)
class Call:
    """One JobOrderReceiver method call: its name and its input arguments."""

    method: str
    arguments: tuple[ua.Variant, ...]


def plan(
    change: OrderChange, order: ProductionOrder, current: isa95.ISA95JobOrderAndStateDataType | None
) -> list[Call]:
    """The calls that take the job order from ``current`` to what ``change`` asks for."""
    job_order_id = ua.Variant(order.order_id, ua.VariantType.String)
    comment = ua.Variant(_comment(change), ua.VariantType.LocalizedText, is_array=True)
    content = ua.Variant(
        isa95.job_order(order, change.idempotency_key).model_dump_json(exclude_none=True),
        ua.VariantType.String,
    )
    # An absent job order is one Store away from NotAllowedToStart.
    state = current.state if current is not None else JobOrderState.NOT_ALLOWED_TO_START
    if order.request_state is RequestState.CANCELLED:
        if current is not None and state is JobOrderState.ABORTED:
            return []
        return [Call("Abort" if state in _STARTED else "Cancel", (job_order_id, comment))]
    before: list[Call] = []
    after: list[Call] = []
    if current is None:
        before.append(Call("Store", (content, comment)))
    elif current.JobOrder.revision < order.revision and (
        state in _PREPARED or change.change_type in _CONTENT_CHANGES
    ):
        before.append(Call("Update", (content, comment)))
    if order.request_state is RequestState.RELEASED:
        if state in _TO_RELEASED:
            after.append(Call(_TO_RELEASED[state], (job_order_id, comment)))
    elif state in _TO_HELD:
        # Stop it first: the machine may start it while the update is on its way.
        before.insert(0, Call(_TO_HELD[state], (job_order_id, comment)))
    return before + after


class JobControlSink:
    """Delivers order changes to an ISA-95 Job Control server and reports what it does.

    One instance is one connection: after SourceUnavailable the supervisor makes a new one.
    ``dropped`` counts events discarded because ``events()`` fell ``QUEUE_EVENTS`` behind.
    """

    def __init__(self, config: JobControlConfig, *, queue_events: int = QUEUE_EVENTS) -> None:
        self._config = config
        self._timeout = config.request_timeout.total_seconds()
        self._client: Client | None = None
        self._receiver = ua.NodeId()
        self._methods: dict[str, ua.NodeId] = {}
        self._job_order_list = ua.NodeId()
        self._events: LiveQueue[Event] = LiveQueue(
            config.name, size=queue_events, stall_timeout=config.stall_timeout.total_seconds()
        )
        self._diff = ListDiff(config.name, self._events)
        self._read = Entries(isa95.ISA95JobOrderAndStateDataType, config.name)
        """JobOrderList as last read: each apply reads the whole list, and parses what is new."""
        self._subscription_id: int | None = None

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def dropped(self) -> int:
        return self._events.dropped

    async def __aenter__(self) -> Self:
        try:
            with map_asyncua_exceptions(self.name, f"connecting to {self._config.endpoint}"):
                self._client = await new_client(self._config)
                self._client.connection_lost_callback = self._events.connection_lost
                await self._bounded(self._client.connect())
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
            return_status = await self._reconcile(change, order)
            if return_status & isa95.ReturnStatus.INVALID_JOB_ORDER_STATUS and not attempt:
                continue  # the job order moved on between our read and our call
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
        client = self._connected()
        with map_asyncua_exceptions(self.name, "reading JobOrderList"):
            value = await self._bounded(client.get_node(self._job_order_list).read_value())
        return {entry.JobOrder.JobOrderID: entry for entry in self._read.parse(value or [])}

    # -- applying ----------------------------------------------------------------------------

    async def _reconcile(self, change: OrderChange, order: ProductionOrder) -> int:
        current = (await self.job_orders()).get(order.order_id)
        for call in plan(change, order, current):
            return_status = await self._call(call)
            if return_status != isa95.ReturnStatus.NO_ERROR:
                _logger.info(
                    "jobcontrol %s: %s %s refused: %s",
                    self.name,
                    call.method,
                    order.order_id,
                    isa95.describe(return_status),
                )
                return return_status
        return isa95.ReturnStatus.NO_ERROR

    async def _call(self, call: Call) -> int:
        """One method call; its ReturnStatus. A Bad result never carries one (B.2): mapped."""
        client = self._connected()
        method_id = self._methods.get(call.method)
        if method_id is None:
            raise LinkMisconfigured(
                f"opcua {self.name}: the job order receiver has no {call.method} method"
            )
        request = ua.CallMethodRequest(
            ObjectId=self._receiver, MethodId=method_id, InputArguments=list(call.arguments)
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
        return int(outputs[0].Value) if outputs else isa95.ReturnStatus.NO_ERROR

    # -- connecting --------------------------------------------------------------------------

    async def _browse(self, client: Client) -> None:
        """The receiver's methods and JobOrderList, then subscribe to both lists."""
        self._receiver = _node_id(self.name, self._config.job_order_receiver)
        children = await self._children(client, self._receiver)
        self._methods = children
        if "JobOrderList" not in children:
            raise LinkMisconfigured(
                f"opcua {self.name}: {self._config.job_order_receiver} has no JobOrderList: "
                "is it an ISA95JobOrderReceiverObjectType?"
            )
        self._job_order_list = children["JobOrderList"]
        provider = _node_id(self.name, self._config.job_response_provider)
        responses = (await self._children(client, provider)).get("JobOrderResponseList")
        if responses is None:
            _logger.warning("jobcontrol %s: no JobOrderResponseList: no confirmations", self.name)
        watched = [self._job_order_list] + ([responses] if responses is not None else [])
        await self._subscribe(client, watched)

    async def _children(self, client: Client, node_id: ua.NodeId) -> dict[str, ua.NodeId]:
        references = await self._bounded(client.get_node(node_id).get_children_descriptions())
        return {reference.BrowseName.Name: reference.NodeId for reference in references}

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
        for node, outcome in zip(nodes, created, strict=True):
            if not outcome.StatusCode.is_good():
                raise LinkMisconfigured(
                    f"opcua {self.name}: cannot monitor {node.to_string()}: "
                    f"{outcome.StatusCode.name}"
                )

    # -- receiving ---------------------------------------------------------------------------

    def _on_publish(self, result: ua.PublishResult) -> None:
        self._events.heard()
        changes: list[tuple[datetime, int, list[str]]] = []
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
            else:
                self._diff.job_order_response_list(value, at)

    # -- closing -----------------------------------------------------------------------------

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        subscription_id, self._subscription_id = self._subscription_id, None
        await close_session(client, subscription_id)
        self._events.lost(SourceUnavailable(f"opcua {self.name}: closed"))

    def _connected(self) -> Client:
        if self._client is None:
            raise SourceUnavailable(f"opcua {self.name}: not connected")
        return self._client

    async def _bounded(self, awaitable: Awaitable[_T]) -> _T:
        async with asyncio.timeout(self._timeout):
            return await awaitable


def _comment(change: OrderChange) -> list[ua.LocalizedText]:
    """Why the method is called: the hold's or cancellation's reason, else the change type."""
    detail = change.body.get("detail")
    reason = detail.get("reason") if isinstance(detail, dict) else None
    return [ua.LocalizedText(str(reason or change.change_type)[:500])]


def _node_id(link: str, text: str) -> ua.NodeId:
    try:
        return ua.NodeId.from_string(text)
    except (ValueError, UaStringParsingError) as exc:
        raise LinkMisconfigured(f"opcua {link}: {text!r} is not a node id") from exc


def _change(item: ua.MonitoredItemNotification) -> tuple[datetime, int, list[str]]:
    data = item.Value
    value = data.Value.Value if data.Value is not None else None
    at = _utc(data.SourceTimestamp or data.ServerTimestamp)
    return at, item.ClientHandle, list(value) if isinstance(value, list) else []


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
