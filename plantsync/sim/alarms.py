"""Alarm conditions on a running asyncua server, raised, acknowledged and cleared on demand.

    SimulatedAlarms.on(server) ─▶ one AlarmConditionType event generator per condition,
                                  emitted by the Server object (i=2253)
    raise_  ─▶ ActiveState true,  AckedState false, Retain true
    acknowledge ─▶ AckedState true (Retain stays while active)
    clear   ─▶ ActiveState false, Retain false once acknowledged

A client acknowledges as OPC UA Part 9 (5.7.3) says: it calls AcknowledgeableConditionType's
Acknowledge method (i=9111) on the condition (ObjectId = the ConditionId) with the EventId it
acknowledges and a Comment. An EventId this condition never reported is ``BadEventIdUnknown``;
a condition already acknowledged is ``BadConditionBranchAlreadyAcked``; otherwise AckedState
becomes true, the Comment is kept, and a new event (a new EventId) reports the new state.

asyncua keeps the last event of every condition with Retain true and reports it again on
ConditionRefresh, as Part 9 asks. Conditions are emitted by the Server object because asyncua
does not forward events along HasNotifier references: subscribe to ``i=2253``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.server.event_generator import EventGenerator
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

SERVER_NOTIFIER = "i=2253"
_ACKNOWLEDGE = ua.NodeId(ua.Int32(ObjectIds.AcknowledgeableConditionType_Acknowledge))


class SimulatedAlarms:
    """AlarmConditionType conditions of one server, by name."""

    def __init__(self, server: Server, namespace_index: int) -> None:
        self._server, self._index = server, namespace_index
        self._generators: dict[str, EventGenerator] = {}
        self._names: dict[ua.NodeId, str] = {}
        self._event_ids: dict[str, set[bytes]] = {}
        """Every EventId each condition reported: what Acknowledge knows."""
        self.comments: dict[str, str] = {}
        """The Comment of each condition's last Acknowledge call."""

    def condition_id(self, name: str) -> str:
        """The ConditionId (node id string) an alarm of ``name`` carries."""
        return f"ns={self._index};s=alarm.{name}"

    async def raise_(
        self, name: str, source_node: str, *, severity: int = 700, message: str = ""
    ) -> None:
        """The condition becomes active and unacknowledged."""
        event = await self._event(name)
        event.SourceNode = ua.NodeId.from_string(source_node)
        event.SourceName = source_node
        event.Severity = severity
        await self._trigger(name, message or f"{name} active", active=True, acked=False)

    async def acknowledge(self, name: str) -> None:
        """Acknowledged at the plant (no method call, no EventId check)."""
        event = await self._event(name)
        active = bool(getattr(event, "ActiveState/Id"))
        await self._trigger(name, f"{name} acknowledged", active=active, acked=True)

    async def clear(self, name: str) -> None:
        """The condition becomes inactive; it is no longer retained once acknowledged."""
        event = await self._event(name)
        acked = bool(getattr(event, "AckedState/Id"))
        await self._trigger(name, f"{name} cleared", active=False, acked=acked)

    async def _on_acknowledge(
        self, condition: ua.NodeId, event_id: ua.Variant, comment: ua.Variant
    ) -> ua.StatusCode:
        """The Acknowledge method, called on ``condition``; see the module docstring."""
        name = self._names.get(condition)
        if name is None:
            return _status(StatusCodes.BadNodeIdUnknown)
        if event_id.Value not in self._event_ids[name]:
            return _status(StatusCodes.BadEventIdUnknown)
        if getattr(self._generators[name].event, "AckedState/Id"):
            return _status(StatusCodes.BadConditionBranchAlreadyAcked)
        text = comment.Value.Text if isinstance(comment.Value, ua.LocalizedText) else ""
        self.comments[name] = text or ""
        await self.acknowledge(name)
        return _status(StatusCodes.Good)

    async def _event(self, name: str) -> Any:
        generator = self._generators.get(name)
        if generator is None:
            if not self._names:  # the first condition: Acknowledge is answered from now on
                self._server.link_method(self._server.get_node(_ACKNOWLEDGE), self._on_acknowledge)
            node_id = ua.NodeId.from_string(self.condition_id(name))
            # The condition's node, so a Call can name it as its ObjectId.
            await self._server.nodes.server.add_object(node_id, ua.QualifiedName(name, self._index))
            generator = await self._server.get_event_generator(
                ua.NodeId(ua.Int32(ObjectIds.AlarmConditionType)),
                ua.NodeId(ua.Int32(ObjectIds.Server)),
            )
            generator.event.NodeId = node_id
            generator.event.ConditionName = name
            self._generators[name], self._names[node_id] = generator, name
            self._event_ids[name] = set()
        return generator.event

    async def _trigger(self, name: str, message: str, *, active: bool, acked: bool) -> None:
        generator = self._generators[name]
        event = generator.event
        setattr(event, "ActiveState/Id", active)
        event.ActiveState = ua.LocalizedText("Active" if active else "Inactive")
        setattr(event, "AckedState/Id", acked)
        event.AckedState = ua.LocalizedText("Acknowledged" if acked else "Unacknowledged")
        event.Retain = active or not acked
        await generator.trigger(time_attr=datetime.now(UTC), message=message)
        event_id = event.EventId
        self._event_ids[name].add(event_id.Value if isinstance(event_id, ua.Variant) else event_id)


def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))
