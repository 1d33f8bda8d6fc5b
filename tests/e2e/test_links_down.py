"""Every plant link going down after the agent connected, staying down, and coming back (issue
13, item 4): the agent keeps running, the link shows down on /api/v1/status and in the metrics,
HQ hears "pending" for a schedule published meanwhile, and the schedule is delivered once.

The issue asks for 30 s down. ``HOLD`` is shorter, and each test asserts what a longer hold
would add: the link was tried again and again at the backoff's cap (1 s here: reconnects,
``FAST_RECONNECT``; the downlink's retries of a change, ``QUICK_RETRIES``), the schedule
waiting. After that the agent's state does not change with the time down, so 30 s would repeat
the same failed attempt 25 more times. (The Job Control server alone going
away is tests/agent/test_composition.py; the hub going away, test_walking_skeleton and
test_business_loop.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from plantsync.agent.service import Agent
from plantsync.agent.supervisor import LinkState
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.hq import Hq, acks, order, outcomes
from tests.e2e.support import HubRecorder, agent_config, eventually, recording, running_agent
from tests.e2e.test_business_loop import business_config
from tests.fixtures.mes import MesServer

pytestmark = pytest.mark.slow

HOLD = 6.0
"""Seconds a counterpart stays down: six times the backoff's cap (see the module docstring)."""
FAILED_AGAIN = 3
"""Failed attempts the hold must show at least, beyond the one that found the link down."""


async def status_and_metrics(agent: Agent) -> tuple[dict[str, Any], str]:
    base = f"http://127.0.0.1:{agent.api_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        status = (await client.get("/api/v1/status")).raise_for_status().json()
        metrics = (await client.get("/metrics")).raise_for_status().text
    return status, metrics


def shown_down(status: dict[str, Any], metrics: str, link: str) -> bool:
    """Down in both: the status's link state and the ``plantsync_link_up`` gauge."""
    return (
        status["links"][link]["state"] != LinkState.UP.value
        and f'plantsync_link_up{{link="{link}"}} 0.0' in metrics
    )


async def hold_down(attempts: Callable[[], int]) -> None:
    """Keep the counterpart away for HOLD, and check it was tried again and again meanwhile:
    ``attempts`` counts the failed tries (reconnects, or the downlink's retries of a change)."""
    before = attempts()
    await asyncio.sleep(HOLD)
    assert attempts() >= before + FAILED_AGAIN


def retries(agent: Agent) -> int:
    return agent.downlink.counters.retries if agent.downlink is not None else 0


async def test_the_mes_going_away_after_it_was_reached_leaves_a_schedule_pending_then_once(
    broker: Mosquitto, mes_server: MesServer, tmp_path: Path
) -> None:
    config = business_config(tmp_path / "store.db", broker, mes_server)
    hq = Hq(broker.url)
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        first = await hq.release(order("JO-1"))
        await _ack(hub, first["id"], "applied")  # the MES was reached: the link is up
        assert agent.health["plant"].state is LinkState.UP

        mes_server.stop()
        second = await hq.release(order("JO-2"))
        await _ack(hub, second["id"], "pending")
        await hold_down(lambda: retries(agent))
        status, metrics = await status_and_metrics(agent)
        assert shown_down(status, metrics, "plant")
        assert "applied" not in outcomes(hub, second["id"])

        mes_server.start()
        await _ack(hub, second["id"], "applied")
    assert outcomes(hub, second["id"]) == ["accepted", "pending", "applied"]
    assert acks(hub, second["id"])[1]["reason_code"] == "plant-unavailable"
    assert mes_server.state.applied_orders() == [("JO-1", 1), ("JO-2", 1)]


async def test_the_plants_opcua_server_going_away_downs_its_source_and_job_control_until_back(
    broker: Mosquitto, jobcontrol_plant: SimulatedPlant, tmp_path: Path
) -> None:
    """One OPC UA server holds the machines (a source) and Job Control (the schedule's sink), as
    a plant's often does: both links go down together and come back together."""
    plant = jobcontrol_plant
    source = plant.server_config("line-1", stall_timeout=timedelta(seconds=3))
    config = agent_config(tmp_path / "store.db", broker.url, source).model_copy(
        update={"jobcontrol": plant.jobcontrol_config(stall_timeout=timedelta(seconds=3))}
    )
    hq = Hq(broker.url)
    async with recording(broker.url) as hub, running_agent(config) as agent:
        links = ("opcua:line-1", "plant")
        await eventually(lambda: all(agent.health[n].state is LinkState.UP for n in links), 30)
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)

        await plant.stop()
        await eventually(lambda: agent.health["plant"].state is not LinkState.UP, within=20)
        message = await hq.release(order("JO-7"))
        await _ack(hub, message["id"], "pending")
        await hold_down(lambda: agent.health["opcua:line-1"].failures)
        status, metrics = await status_and_metrics(agent)
        assert all(shown_down(status, metrics, link) for link in links)
        assert "applied" not in outcomes(hub, message["id"])

        await plant.start()
        await _ack(hub, message["id"], "applied")
        await plant.set_value("press-1", "speed", 4242.0)
        await hub.wait_for(lambda: 4242.0 in hub.values("press-1", "speed"), within=30)
    assert outcomes(hub, message["id"]) == ["accepted", "pending", "applied"]
    assert plant.job_control is not None
    assert plant.job_control.state("JO-7") is not None
    assert sum(1 for m in hub.business if m["type"] == "schedule.ack") == 3


async def _ack(hub: HubRecorder, message_id: str, outcome: str) -> None:
    await hub.wait_for(lambda: outcome in outcomes(hub, message_id), within=40)
