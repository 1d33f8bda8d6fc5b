"""Alarms & Conditions for the OPC UA source: the event filter, ConditionRefresh, the mapping.

    event_notifiers (config) ─▶ CreateMonitoredItems on each notifier's EventNotifier attribute,
                                with an EventFilter of the standard fields (FIELDS)
                            ─▶ ConditionRefresh(subscription): the server reports again every
                               condition it retains, between a RefreshStart and a RefreshEnd event
    EventNotificationList ─▶ AlarmEvents.alarms ─▶ contracts.alarms.Alarm (refresh marked)

No where clause: servers disagree on whether OfType includes subtypes (asyncua's does not), so
every event of a notifier is selected, and those without a ConditionId (plain events) are left
out here. RefreshStart/End events only mark the window; they are not sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from asyncua import ua
from asyncua.client.ua_session import UaSession
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds

from plantsync.contracts.alarms import Alarm

_logger = logging.getLogger(__name__)

EVENT_HANDLE_BASE = 1 << 30
"""Client handles of event items start here, far above the data items' (0 … n-1)."""

EVENT_QUEUE_SIZE = 1000
"""Events a server holds per notifier between two publish responses (a refresh burst)."""

FIELDS: tuple[tuple[int, str], ...] = (
    (ObjectIds.BaseEventType, "EventId"),
    (ObjectIds.BaseEventType, "EventType"),
    (ObjectIds.BaseEventType, "SourceNode"),
    (ObjectIds.BaseEventType, "SourceName"),
    (ObjectIds.BaseEventType, "Time"),
    (ObjectIds.BaseEventType, "Severity"),
    (ObjectIds.BaseEventType, "Message"),
    (ObjectIds.ConditionType, "ConditionName"),
    (ObjectIds.ConditionType, "Retain"),
    (ObjectIds.AlarmConditionType, "ActiveState/Id"),
    (ObjectIds.AcknowledgeableConditionType, "AckedState/Id"),
    (ObjectIds.ConditionType, ""),  # the ConditionId: the NodeId attribute, no browse path
)
"""The select clauses, in the order their values come back: (type definition, browse path)."""

_REFRESH_START = ua.NodeId(ua.Int32(ObjectIds.RefreshStartEventType))
_REFRESH_END = ua.NodeId(ua.Int32(ObjectIds.RefreshEndEventType))


def event_filter() -> ua.EventFilter:
    """The standard fields of BaseEventType, ConditionType and AlarmConditionType."""
    return ua.EventFilter(
        SelectClauses=[
            ua.SimpleAttributeOperand(
                TypeDefinitionId=ua.NodeId(ua.Int32(type_id)),
                BrowsePath=[ua.QualifiedName(name, 0) for name in path.split("/") if name],
                AttributeId=AttributeIds.Value if path else AttributeIds.NodeId,
            )
            for type_id, path in FIELDS
        ]
    )


def event_item(index: int, notifier: ua.NodeId) -> ua.MonitoredItemCreateRequest:
    """A monitored item for the events of one notifier (client handle EVENT_HANDLE_BASE+i)."""
    return ua.MonitoredItemCreateRequest(
        ItemToMonitor=ua.ReadValueId(NodeId=notifier, AttributeId=AttributeIds.EventNotifier),
        MonitoringMode=ua.MonitoringMode.Reporting,
        RequestedParameters=ua.MonitoringParameters(
            ClientHandle=EVENT_HANDLE_BASE + index,
            SamplingInterval=0,
            QueueSize=EVENT_QUEUE_SIZE,
            DiscardOldest=True,
            Filter=event_filter(),
        ),
    )


async def condition_refresh(session: UaSession, subscription_id: int) -> None:
    """ConditionType.ConditionRefresh(subscription): retained conditions are reported again."""
    request = ua.CallMethodRequest(
        ObjectId=ua.NodeId(ua.Int32(ObjectIds.ConditionType)),
        MethodId=ua.NodeId(ua.Int32(ObjectIds.ConditionType_ConditionRefresh)),
        InputArguments=[ua.Variant(subscription_id, ua.VariantType.UInt32)],
    )
    (result,) = await session.call([request])
    if not result.StatusCode.is_good():
        # Alarms still flow; only what changed while the link was down stays unknown.
        _logger.warning(
            "opcua: ConditionRefresh refused (%s): retained conditions are not re-reported",
            result.StatusCode.name,
        )


async def acknowledge(
    session: UaSession, condition_id: ua.NodeId, event_id: bytes, comment: str
) -> ua.StatusCode:
    """AcknowledgeableConditionType.Acknowledge(EventId, Comment) called on the condition (the
    ObjectId is the ConditionId, the MethodId the type's method, as Part 9 5.7.3 says)."""
    request = ua.CallMethodRequest(
        ObjectId=condition_id,
        MethodId=ua.NodeId(ua.Int32(ObjectIds.AcknowledgeableConditionType_Acknowledge)),
        InputArguments=[
            ua.Variant(event_id, ua.VariantType.ByteString),
            ua.Variant(ua.LocalizedText(comment), ua.VariantType.LocalizedText),
        ],
    )
    (result,) = await session.call([request])
    status: ua.StatusCode = result.StatusCode
    return status


class AlarmEvents:
    """Turns a subscription's event notifications into alarms, marking the refreshed ones."""

    def __init__(self, notifiers: Sequence[str]) -> None:
        self._notifiers = list(notifiers)
        self._refreshing = False

    def alarms(self, notification: ua.EventNotificationList) -> Iterator[Alarm]:
        """The condition events of one notification, in order; markers and plain events left
        out. A malformed event is logged and skipped: one bad event must not end the link."""
        for event in notification.Events:
            fields = [_plain(variant) for variant in event.EventFields]
            if len(fields) != len(FIELDS):
                continue
            event_type = fields[1]
            if event_type == _REFRESH_START:
                self._refreshing = True
            elif event_type == _REFRESH_END:
                self._refreshing = False
            elif isinstance(fields[-1], ua.NodeId) and not fields[-1].is_null():
                notifier = self._notifier(event.ClientHandle)
                try:
                    yield _alarm(fields, refresh=self._refreshing, notifier=notifier)
                except ValueError as exc:  # pydantic's ValidationError is one
                    _logger.warning("alarm event from %s skipped: %s", notifier, exc)

    def _notifier(self, handle: int) -> str | None:
        index = handle - EVENT_HANDLE_BASE
        return self._notifiers[index] if 0 <= index < len(self._notifiers) else None


def _plain(variant: ua.Variant) -> object:
    value: object = variant.Value
    while isinstance(value, ua.Variant):  # some servers wrap a field twice
        value = value.Value
    return value


def _alarm(fields: list[object], *, refresh: bool, notifier: str | None) -> Alarm:
    (event_id, event_type, source, source_name, time, severity, message, name, retain,
     active, acked, condition) = fields  # fmt: skip
    return Alarm(
        event_id=event_id.hex() if isinstance(event_id, bytes) else str(event_id or ""),
        event_type=_node(event_type) or "",
        condition_id=_node(condition) or "",
        condition_name=name if isinstance(name, str) else None,
        source_node=_node(source),
        source_name=source_name if isinstance(source_name, str) else None,
        time=_utc(time),
        severity=severity if isinstance(severity, int) else 0,
        message=message.Text if isinstance(message, ua.LocalizedText) else None,
        active=active if isinstance(active, bool) else None,
        acked=acked if isinstance(acked, bool) else None,
        retain=retain if isinstance(retain, bool) else None,
        refresh=refresh,
        notifier=notifier,
    )


def _node(value: object) -> str | None:
    return value.to_string() if isinstance(value, ua.NodeId) else None


def _utc(moment: object) -> datetime:
    if not isinstance(moment, datetime):
        return datetime.now(UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
