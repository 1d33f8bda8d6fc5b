"""The business loop end to end: HQ publishes schedules to a real Mosquitto, the agent applies
them through a real HTTP MES, and acknowledgements and confirmations come back to HQ."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from plantsync.agent.service import Agent
from plantsync.config.model import AgentConfig, ApiConfig, ScheduleConfig
from plantsync.config.plant import MesConfig, OpcUaServerConfig
from plantsync.contracts.orders import ProductionConfirmation
from plantsync.contracts.schedule import Quantity
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.hq import Hq, acks, order, outcomes
from tests.e2e.support import (
    HubRecorder,
    agent_config,
    eventually,
    gapless,
    recording,
    running_agent,
    start_agent_process,
)
from tests.fixtures.mes import MesServer
from tests.fixtures.opcua import free_port

pytestmark = pytest.mark.slow

QUICK_RETRIES = ScheduleConfig(
    retry_initial_delay=timedelta(milliseconds=100), retry_max_delay=timedelta(seconds=1)
)


def business_config(store: Path, broker: Mosquitto, mes: MesServer | None) -> AgentConfig:
    """An agent with no OPC UA source, delivering schedules to ``mes`` (or its own schedule)."""
    base = agent_config(store, broker.url, _unused_opcua_server())
    mes_config = MesConfig(url=mes.url, request_timeout=timedelta(seconds=5)) if mes else None
    return base.model_copy(update={"opcua": [], "mes": mes_config, "schedule": QUICK_RETRIES})


def _unused_opcua_server() -> OpcUaServerConfig:
    return OpcUaServerConfig.model_validate(
        {
            "name": "none",
            "endpoint": f"opc.tcp://127.0.0.1:{free_port()}/",
            "machines": [{"id": "m", "tags": [{"name": "t", "node_id": "ns=2;s=t"}]}],
        }
    )


async def _subscribed(agent: Agent) -> None:
    """The agent's hub link is up: its subscription to the down topic is in place."""
    await eventually(lambda: agent.health["hub"].connects >= 1, within=20)


def _resync_requests(hub: HubRecorder) -> int:
    return sum(1 for m in hub.business if m["type"] == "resync.request")


async def _ack_outcome(hub: HubRecorder, message_id: str, outcome: str) -> None:
    await hub.wait_for(lambda: outcome in outcomes(hub, message_id), within=30)


async def test_a_schedule_sent_while_the_agent_is_stopped_is_applied_once_after_it_starts(
    broker: Mosquitto, mes_server: MesServer, tmp_path: Path
) -> None:
    config = business_config(tmp_path / "store.db", broker, mes_server)
    hq = Hq(broker.url)
    async with recording(broker.url) as hub:
        async with running_agent(config) as agent:
            await _subscribed(agent)
        message = await hq.release(order("JO-1"), order("JO-2"))
        async with running_agent(config):
            await _ack_outcome(hub, message["id"], "applied")
    assert sorted(mes_server.state.applied_orders()) == [("JO-1", 1), ("JO-2", 1)]
    assert outcomes(hub, message["id"]) == ["accepted", "applied"]


async def test_the_same_message_twice_is_applied_once_and_acknowledged_both_times(
    broker: Mosquitto, mes_server: MesServer, tmp_path: Path
) -> None:
    config = business_config(tmp_path / "store.db", broker, mes_server)
    hq = Hq(broker.url)
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await _subscribed(agent)
        message = await hq.release(order("JO-1"))
        await _ack_outcome(hub, message["id"], "applied")
        await hq.publish(message)
        await hub.wait_for(lambda: len(acks(hub, message["id"])) == 3, within=20)
    duplicate = acks(hub, message["id"])[-1]
    assert duplicate["outcome"] == "accepted"
    assert duplicate["reason_code"] == "duplicate"
    assert mes_server.state.applied_orders() == [("JO-1", 1)]
    assert mes_server.state.requests == 1


async def test_stale_and_bad_messages_are_rejected_and_the_agent_keeps_applying(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = business_config(tmp_path / "store.db", broker, None)
    hq = Hq(broker.url)
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await _subscribed(agent)
        newer = await hq.release(order("JO-1", revision=2))
        await _ack_outcome(hub, newer["id"], "applied")
        stale = hq.message("schedule.revision", {"orders": [order("JO-1", revision=1)]})
        await hq.publish(stale)
        await hq.publish(b"{this is not json")
        invalid = hq.message("schedule.release", {"orders": [order("JO-3", revision=0)]})
        await hq.publish(invalid)
        later = await hq.release(order("JO-4"))
        await _ack_outcome(hub, later["id"], "applied")
        assert agent.store is not None
        dead_letters = await agent.store.inbox.dead_letters()
    assert acks(hub, stale["id"])[-1]["reason_code"] == "stale"
    assert acks(hub, invalid["id"])[-1]["reason_code"] == "schema-violation"
    malformed = [a for a in _all_acks(hub) if a["reason_code"] == "malformed-json"]
    assert len(malformed) == 1
    assert malformed[0]["outcome"] == "rejected"
    assert malformed[0]["original_id"].startswith("sha256:")
    assert sorted(letter.reason_code for letter in dead_letters) == [
        "malformed-json",
        "schema-violation",
    ]


def _all_acks(hub: HubRecorder) -> list[dict[str, Any]]:
    return [m["payload"] for m in hub.business if m["type"] == "schedule.ack"]


async def test_a_change_waits_as_pending_while_the_mes_is_down_and_is_applied_once_it_returns(
    broker: Mosquitto, mes_server: MesServer, tmp_path: Path
) -> None:
    config = business_config(tmp_path / "store.db", broker, mes_server)
    hq = Hq(broker.url)
    mes_server.stop()
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await _subscribed(agent)
        message = await hq.release(order("JO-1"))
        await _ack_outcome(hub, message["id"], "pending")
        await asyncio.sleep(2)  # several retries against the stopped MES
        mes_server.start()
        await _ack_outcome(hub, message["id"], "applied")
        retries = agent.downlink.counters.retries if agent.downlink else 0
    assert outcomes(hub, message["id"]) == ["accepted", "pending", "applied"]
    assert acks(hub, message["id"])[1]["reason_code"] == "plant-unavailable"
    assert retries >= 2
    assert mes_server.state.applied_orders() == [("JO-1", 1)]


async def test_a_kill_between_the_inbox_commit_and_the_apply_applies_once_after_restart(
    broker: Mosquitto, mes_server: MesServer, tmp_path: Path
) -> None:
    config = business_config(tmp_path / "store.db", broker, mes_server)
    config_file = tmp_path / "agent.toml"
    config_file.write_text(_toml(config, mes_server))
    log = tmp_path / "agent.log"
    hq = Hq(broker.url)
    mes_server.state.response_delay = 3.0  # the MES applies, then answers late
    async with recording(broker.url) as hub:
        agent = start_agent_process(config_file, log)
        # The agent asks for a resync once it has subscribed without a stored session.
        await hub.wait_for(lambda: _resync_requests(hub) >= 1, within=30)
        message = await hq.release(order("JO-1"))
        await eventually(lambda: mes_server.state.requests >= 1, within=30)
        agent.send_signal(signal.SIGKILL)  # applied at the MES, not yet settled in the inbox
        await asyncio.to_thread(agent.wait, 10)
        mes_server.state.response_delay = 0.0
        agent = start_agent_process(config_file, log)
        await _ack_outcome(hub, message["id"], "applied")
        agent.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(agent.wait, 30) == 0, log.read_text()
    assert mes_server.state.requests == 2, "the retry reached the MES"
    assert mes_server.state.applied_orders() == [("JO-1", 1)], "and took effect once"


def _toml(config: AgentConfig, mes: MesServer) -> str:
    return (
        f'[site]\nid = "{config.site.id}"\n'
        f'[hub]\nurl = "{config.hub.url}"\nkeepalive = "5s"\n'
        f'[store]\npath = "{config.store.path}"\n'
        f"[api]\nport = 0\n"
        f'[mes]\nurl = "{mes.url}"\nrequest_timeout = "10s"\n'
        '[schedule]\nretry_initial_delay = "100ms"\nretry_max_delay = "1s"\n'
        '[reconnect]\ninitial_delay = "100ms"\nmax_delay = "1s"\n'
    )


OUTAGE_STEPS = 30
STEP_SECONDS = 0.2
"""The issue asks for a 30 s outage, one confirmation per order per second. Here the same 30
confirmations per order come 0.2 s apart (6 s down, six times the reconnect backoff's 1 s cap),
and the test asserts what a longer outage would add: the agent tried the broker again and again
meanwhile. After that nothing changes with the time down but the number of failed attempts."""


async def test_confirmations_made_during_a_broker_outage_all_reach_hq_in_order(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = business_config(tmp_path / "store.db", broker, None)
    orders = ("JO-1", "JO-2", "JO-3")
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await _subscribed(agent)
        await asyncio.to_thread(broker.stop)
        failures = agent.health["hub"].failures
        sent = 0
        for step in range(1, OUTAGE_STEPS + 1):  # one confirmation per order per step
            for order_id in orders:
                await _confirm(agent, order_id, step)
                sent += 1
            await asyncio.sleep(STEP_SECONDS)
        assert agent.health["hub"].failures >= failures + 3  # tried again and again
        await asyncio.to_thread(broker.start)
        await hub.wait_for(lambda: _confirmations(hub) == sent, within=60)
    for order_id in orders:
        received = [
            m
            for m in hub.business
            if m["type"] == "production.confirmation" and m["payload"]["order_id"] == order_id
        ]
        assert [m["payload"]["confirmation_id"] for m in received] == [
            f"{order_id}-{step}" for step in range(1, OUTAGE_STEPS + 1)
        ]
        assert gapless([m["seq"] for m in received])


def _confirmations(hub: HubRecorder) -> int:
    return len({m["id"] for m in hub.business if m["type"] == "production.confirmation"})


async def _confirm(agent: Agent, order_id: str, step: int) -> None:
    assert agent.business is not None
    now = datetime.now(UTC)
    await agent.business.confirmation(
        ProductionConfirmation(
            confirmation_id=f"{order_id}-{step}",
            order_id=order_id,
            revision=1,
            good_quantity=Quantity(value=Decimal(step * 10), unit="pcs"),
            scrap_quantity=Quantity(value=Decimal(1), unit="pcs"),
            actual_start=now - timedelta(minutes=1),
            actual_end=now,
            final=step == OUTAGE_STEPS,
        ),
        source="test",
    )


async def test_a_change_inside_the_frozen_horizon_is_applied_only_after_approval_through_the_api(
    broker: Mosquitto, mes_server: MesServer, tmp_path: Path
) -> None:
    token = "planner-token-0123456789abcdef"  # noqa: S105 - a test token
    config = business_config(tmp_path / "store.db", broker, mes_server).model_copy(
        update={"api": ApiConfig(port=0, token=SecretStr(token))}
    )
    hq = Hq(broker.url)
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await _subscribed(agent)
        release = await hq.release(order("JO-1", starts_in=timedelta(days=2)))
        await _ack_outcome(hub, release["id"], "applied")
        soon = order("JO-1", revision=2, starts_in=timedelta(hours=1))
        revision = hq.message("schedule.revision", {"orders": [soon]})
        await hq.publish(revision)
        await _ack_outcome(hub, revision["id"], "waiting-for-approval")
        assert mes_server.state.applied_orders() == [("JO-1", 1)], "not applied before approval"
        base = f"http://127.0.0.1:{agent.api_port}/api/v1"
        async with httpx.AsyncClient(base_url=base, timeout=10) as api:
            (waiting,) = (await api.get("/approvals")).json()
            refused = await api.post(f"/approvals/{waiting['row_id']}/approve")
            approved = await api.post(
                f"/approvals/{waiting['row_id']}/approve",
                headers={"Authorization": f"Bearer {token}"},
            )
        await _ack_outcome(hub, revision["id"], "applied")
    assert refused.status_code == 401
    assert approved.status_code == 200
    assert sorted(mes_server.state.applied_orders()) == [("JO-1", 1), ("JO-1", 2)]
    assert outcomes(hub, revision["id"]) == ["accepted", "waiting-for-approval", "applied"]
