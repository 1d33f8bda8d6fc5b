"""HQ acknowledges an alarm (``alarm.ack``): Mosquitto, the agent as ``build_agent`` makes it, and
a real asyncua server whose conditions answer Acknowledge as OPC UA Part 9 says (sim/alarms.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from plantsync.agent.service import Agent
from plantsync.agent.supervisor import LinkState
from plantsync.contracts.alarms import AlarmMessage
from plantsync.sim.alarms import SERVER_NOTIFIER, SimulatedAlarms
from plantsync.sim.plant import NAMESPACE, SimulatedPlant
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.hq import Hq, acks, outcomes
from tests.e2e.support import HubRecorder, agent_config, eventually, recording, running_agent
from tests.metrics.support import scrape, value

LINK = "opcua:line-1"
WITHIN = 20


def config(plant: SimulatedPlant, store: Path, broker: Mosquitto, mode: str) -> Any:
    server = plant.server_config(
        "line-1", event_notifiers=[SERVER_NOTIFIER], acknowledge_from_hq=mode
    )
    return agent_config(store, broker.url, server)


def alarms(hub: HubRecorder) -> list[dict[str, Any]]:
    return [message for message in hub.business if message["type"] == "alarm"]


def ack_of(hq: Hq, alarm: dict[str, Any], **changes: str) -> dict[str, Any]:
    """The alarm.ack HQ sends for ``alarm`` as it was published."""
    payload = {
        "source": alarm["source"],
        "condition_id": alarm["payload"]["condition_id"],
        "event_id": alarm["payload"]["event_id"],
        "comment": "seen",
        "user": "hq.shift-lead",
    }
    return hq.message("alarm.ack", payload | changes) | {"stream": "alarm-acks"}


async def raised(plant: SimulatedPlant, agent: Agent, hub: HubRecorder) -> SimulatedAlarms:
    conditions = SimulatedAlarms(plant.server, await plant.server.get_namespace_index(NAMESPACE))
    await eventually(lambda: agent.health[LINK].state is LinkState.UP, WITHIN)
    await conditions.raise_("overtemperature", plant.node_id("press-1", "temperature"))
    await hub.wait_for(lambda: len(alarms(hub)) == 1, within=WITHIN)
    return conditions


async def settled(hub: HubRecorder, message: dict[str, Any]) -> dict[str, Any]:
    await hub.wait_for(lambda: len(acks(hub, message["id"])) == 2, within=WITHIN)
    return acks(hub, message["id"])[-1]


async def test_raised_acknowledged_from_hq_and_cleared_reach_the_hub_once_each_in_order(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    """The agent stops after the raise; HQ's ack waits at the broker and in the inbox; the
    restarted agent applies it once. HQ drops the refresh's re-reports by event_id."""
    settings = config(opcua_plant, tmp_path / "store.db", broker, "apply")
    hq = Hq(broker.url)
    async with recording(broker.url) as hub:
        async with running_agent(settings) as agent:
            conditions = await raised(opcua_plant, agent, hub)
        ack = ack_of(hq, alarms(hub)[0])
        await hq.publish(ack, topic="alarm")
        async with running_agent(settings) as agent:
            await settled(hub, ack)
            await hub.wait_for(lambda: any(a["payload"]["acked"] for a in alarms(hub)), WITHIN)
            await conditions.clear("overtemperature")
            await hub.wait_for(lambda: not alarms(hub)[-1]["payload"]["active"], WITHIN)
            counters = agent.downlink.alarm_acks.counters if agent.downlink else None

    received = sorted(alarms(hub), key=lambda message: int(message["seq"]))
    seen: dict[str, dict[str, Any]] = {}
    for message in received:
        AlarmMessage.model_validate(message)
        if message["payload"]["event_id"] in seen:
            assert message["payload"]["refresh"] is True  # a re-report, not a transition
            continue
        seen[message["payload"]["event_id"]] = message["payload"]
    assert len(seen) < len(received)  # the restart's ConditionRefresh re-reported the raise
    states = [(alarm["active"], alarm["acked"]) for alarm in seen.values()]
    assert states == [(True, False), (True, True), (False, True)]
    assert outcomes(hub, ack["id"]) == ["accepted", "applied"]
    assert conditions.comments["overtemperature"] == "hq.shift-lead: seen"
    assert counters is not None
    assert (counters.applied, counters.rejected) == (1, 0)


async def test_what_the_server_refuses_reaches_hq_as_a_rejection_with_its_status_name(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    settings = config(opcua_plant, tmp_path / "store.db", broker, "apply")
    hq = Hq(broker.url)
    async with recording(broker.url) as hub, running_agent(settings) as agent:
        await raised(opcua_plant, agent, hub)
        alarm = alarms(hub)[0]
        sent = [
            ack_of(hq, alarm, event_id="00ff"),
            ack_of(hq, alarm),
            ack_of(hq, alarm),
            ack_of(hq, alarm, source="opcua:nowhere"),
        ]
        for message in sent:
            await hq.publish(message, topic="alarm")
        answers = [await settled(hub, message) for message in sent]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.api_port}") as api:
            samples = await scrape(api)
            status = (await api.get("/api/v1/status")).json()

    assert [(a["outcome"], a["reason_code"]) for a in answers] == [
        ("rejected", "plant-rejected"),
        ("applied", None),
        ("rejected", "plant-rejected"),
        ("rejected", "unknown-source"),
    ]
    assert answers[0]["reason"] == "BadEventIdUnknown"
    assert answers[2]["reason"] == "BadConditionBranchAlreadyAcked"
    assert all(a["original_type"] == "alarm.ack" for a in answers)
    settled_total = "plantsync_alarm_acks_settled_total"
    assert value(samples, settled_total, outcome="applied") == 1
    assert value(samples, settled_total, outcome="rejected") == 3
    counts = status["downlink"]
    assert (counts["alarm_acks_applied"], counts["alarm_acks_rejected"]) == (1, 3)


async def test_a_bad_alarm_ack_is_a_dead_letter_and_acks_wait_for_the_plants_approval(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    settings = config(opcua_plant, tmp_path / "store.db", broker, "approval")
    hq = Hq(broker.url)
    async with recording(broker.url) as hub, running_agent(settings) as agent:
        await raised(opcua_plant, agent, hub)
        bad = ack_of(hq, alarms(hub)[0], event_id="not hex")
        await hq.publish(bad, topic="alarm")
        await hub.wait_for(lambda: bool(acks(hub, bad["id"])), within=WITHIN)
        ack = ack_of(hq, alarms(hub)[0])
        await hq.publish(ack, topic="alarm")
        assert (await settled(hub, ack))["outcome"] == "waiting-for-approval"
        assert agent.store is not None
        assert agent.downlink is not None
        (row,) = await agent.store.inbox.waiting_approval()
        assert await agent.downlink.approve(row.row_id)
        await hub.wait_for(lambda: len(acks(hub, ack["id"])) == 3, within=WITHIN)
        again = ack_of(hq, alarms(hub)[0])
        await hq.publish(again, topic="alarm")
        await hub.wait_for(lambda: len(acks(hub, again["id"])) == 2, within=WITHIN)
        (row,) = await agent.store.inbox.waiting_approval()
        assert await agent.downlink.reject(row.row_id, "already seen on the floor")
        await hub.wait_for(lambda: len(acks(hub, again["id"])) == 3, within=WITHIN)
        (letter,) = await agent.store.inbox.dead_letters()
        counters = agent.downlink.alarm_acks.counters

    (refusal,) = acks(hub, bad["id"])
    assert (refusal["outcome"], refusal["reason_code"]) == ("rejected", "schema-violation")
    assert letter.message_id == bad["id"]
    assert outcomes(hub, ack["id"]) == ["accepted", "waiting-for-approval", "applied"]
    assert acks(hub, again["id"])[-1]["reason_code"] == "approval-rejected"
    assert (counters.applied, counters.rejected, counters.waiting) == (1, 1, 2)
