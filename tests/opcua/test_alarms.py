"""Alarms & Conditions through OpcUaSource, against a real asyncua server raising, acknowledging
and clearing AlarmConditionType conditions (sim/alarms.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from plantsync.agent.supervisor import LinkState
from plantsync.config.plant import OpcUaServerConfig
from plantsync.contracts.alarms import Alarm, AlarmMessage
from plantsync.drivers.opcua import OpcUaSource
from plantsync.errors import LinkMisconfigured
from plantsync.sim.alarms import SERVER_NOTIFIER, SimulatedAlarms
from plantsync.sim.plant import NAMESPACE, SimulatedPlant
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.support import HubRecorder, agent_config, eventually, recording, running_agent
from tests.opcua.support import WAIT


async def alarms_of(plant: SimulatedPlant) -> SimulatedAlarms:
    return SimulatedAlarms(plant.server, await plant.server.get_namespace_index(NAMESPACE))


def with_alarms(plant: SimulatedPlant, *notifiers: str) -> OpcUaServerConfig:
    return plant.server_config(event_notifiers=list(notifiers or [SERVER_NOTIFIER]))


async def next_alarm(alarms: AsyncIterator[Alarm]) -> Alarm:
    async with asyncio.timeout(WAIT):
        return await anext(alarms)


async def test_a_condition_raised_acknowledged_and_cleared_arrives_as_three_alarms_in_order(
    opcua_plant: SimulatedPlant,
) -> None:
    conditions = await alarms_of(opcua_plant)
    source_node = opcua_plant.node_id("press-1", "temperature")
    async with OpcUaSource(with_alarms(opcua_plant)) as source:
        alarms = source.alarms()
        await conditions.raise_("overtemperature", source_node, severity=800, message="hot")
        raised = await next_alarm(alarms)
        await conditions.acknowledge("overtemperature")
        acked = await next_alarm(alarms)
        await conditions.clear("overtemperature")
        cleared = await next_alarm(alarms)

    assert raised.condition_id == conditions.condition_id("overtemperature")
    assert raised.condition_name == "overtemperature"
    assert raised.source_node == source_node
    assert (raised.severity, raised.message) == (800, "hot")
    assert (raised.active, raised.acked, raised.retain, raised.refresh) == (
        True,
        False,
        True,
        False,
    )
    assert (acked.active, acked.acked, acked.retain) == (True, True, True)
    assert (cleared.active, cleared.acked, cleared.retain) == (False, True, False)
    assert raised.time <= acked.time <= cleared.time
    assert len({raised.event_id, acked.event_id, cleared.event_id}) == 3
    assert raised.notifier == SERVER_NOTIFIER


async def test_a_new_session_hears_the_retained_conditions_again_marked_refresh(
    opcua_plant: SimulatedPlant,
) -> None:
    conditions = await alarms_of(opcua_plant)
    source_node = opcua_plant.node_id("press-2", "speed")
    async with OpcUaSource(with_alarms(opcua_plant)) as source:
        alarms = source.alarms()
        await conditions.raise_("jam", source_node)
        await conditions.raise_("door-open", source_node)
        await conditions.acknowledge("door-open")
        await conditions.clear("door-open")  # acknowledged and cleared: no longer retained
        first = [await next_alarm(alarms) for _ in range(4)]

    async with OpcUaSource(with_alarms(opcua_plant)) as source:
        refreshed = await next_alarm(source.alarms())

    assert [alarm.condition_name for alarm in first] == [
        "jam",
        "door-open",
        "door-open",
        "door-open",
    ]
    assert refreshed.refresh is True
    assert refreshed.condition_name == "jam"
    assert refreshed.event_id == first[0].event_id  # the event that last changed it
    assert (refreshed.active, refreshed.acked) == (True, False)


async def test_a_notifier_that_is_not_an_event_notifier_is_a_configuration_error(
    opcua_plant: SimulatedPlant,
) -> None:
    config = with_alarms(opcua_plant, opcua_plant.node_id("press-1", "speed"))
    with pytest.raises(LinkMisconfigured, match="event_notifiers"):
        async with OpcUaSource(config):
            pass


@pytest.mark.slow
async def test_raised_then_cleared_reach_the_hub_in_order_across_an_agent_restart(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    """Raised with the agent up; acknowledged while it is stopped; after the restart the
    ConditionRefresh tells HQ the acknowledged state; then cleared. One stream, gapless."""
    conditions = await alarms_of(opcua_plant)
    server = with_alarms(opcua_plant).model_copy(update={"name": "line-1"})
    config = agent_config(tmp_path / "store.db", broker.url, server)
    source_node = opcua_plant.node_id("press-1", "temperature")

    def alarms(hub: HubRecorder) -> list[dict[str, Any]]:
        return [message for message in hub.business if message["type"] == "alarm"]

    async with recording(broker.url) as hub:
        async with running_agent(config) as agent:
            await eventually(lambda: agent.health["opcua:line-1"].state is LinkState.UP, 20)
            await conditions.raise_("overtemperature", source_node, severity=900)
            await hub.wait_for(lambda: len(alarms(hub)) == 1, within=20)
        await conditions.acknowledge("overtemperature")
        async with running_agent(config):
            await hub.wait_for(lambda: len(alarms(hub)) == 2, within=20)
            await conditions.clear("overtemperature")
            await hub.wait_for(lambda: len(alarms(hub)) == 3, within=20)

    received = alarms(hub)
    states = [
        (m["payload"]["active"], m["payload"]["acked"], m["payload"]["refresh"]) for m in received
    ]
    assert states == [(True, False, False), (True, True, True), (False, True, False)]
    assert {m["stream"] for m in received} == {"alarm/opcua:line-1"}
    assert [m["seq"] for m in received] == [1, 2, 3]
    assert all(m["payload"]["condition_name"] == "overtemperature" for m in received)
    for message in received:
        AlarmMessage.model_validate(message)  # the documented contract
