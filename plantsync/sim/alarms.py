"""Alarm conditions on a running asyncua server, raised, acknowledged and cleared on demand.

    SimulatedAlarms.on(server) ─▶ one AlarmConditionType event generator per condition,
                                  emitted by the Server object (i=2253)
    raise_  ─▶ ActiveState true,  AckedState false, Retain true
    acknowledge ─▶ AckedState true (Retain stays while active)
    clear   ─▶ ActiveState false, Retain false once acknowledged

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

SERVER_NOTIFIER = "i=2253"


class SimulatedAlarms:
    """AlarmConditionType conditions of one server, by name."""

    def __init__(self, server: Server, namespace_index: int) -> None:
        self._server, self._index = server, namespace_index
        self._generators: dict[str, EventGenerator] = {}

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
        event = await self._event(name)
        active = bool(getattr(event, "ActiveState/Id"))
        await self._trigger(name, f"{name} acknowledged", active=active, acked=True)

    async def clear(self, name: str) -> None:
        """The condition becomes inactive; it is no longer retained once acknowledged."""
        event = await self._event(name)
        acked = bool(getattr(event, "AckedState/Id"))
        await self._trigger(name, f"{name} cleared", active=False, acked=acked)

    async def _event(self, name: str) -> Any:
        generator = self._generators.get(name)
        if generator is None:
            generator = await self._server.get_event_generator(
                ua.NodeId(ua.Int32(ObjectIds.AlarmConditionType)),
                ua.NodeId(ua.Int32(ObjectIds.Server)),
            )
            generator.event.NodeId = ua.NodeId.from_string(self.condition_id(name))
            generator.event.ConditionName = name
            self._generators[name] = generator
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
