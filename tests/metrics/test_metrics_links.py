"""Metrics of a running agent against a real Mosquitto: every named metric exists, and the link
and outbox metrics move when the broker goes away and comes back."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from plantsync.agent.service import Agent
from plantsync.config.model import AgentConfig, ApiConfig
from plantsync.config.plant import OpcUaServerConfig
from plantsync.contracts import new_message_id
from plantsync.tools.localbroker import Mosquitto
from tests.api.support import confirmation
from tests.e2e.hq import Hq, order, outcomes
from tests.e2e.support import agent_config, eventually, recording, running_agent
from tests.fixtures.opcua import free_port
from tests.metrics.support import scrape, value

pytestmark = pytest.mark.slow

TOKEN = "metrics-test-t0ken-31337"  # noqa: S105 - a test value
AUTH = {"Authorization": f"Bearer {TOKEN}"}

EVERY_METRIC = (
    "plantsync_agent_info",
    "plantsync_store_up",
    "plantsync_outbox_depth",
    "plantsync_outbox_oldest_age_seconds",
    "plantsync_outbox_size_bytes",
    "plantsync_outbox_max_size_bytes",
    "plantsync_outbox_evicted_total",
    "plantsync_dead_letters_total",
    "plantsync_dead_letters_stored",
    "plantsync_messages_published_total",
    "plantsync_messages_acked_total",
    "plantsync_messages_requeued_total",
    "plantsync_readings_total",
    "plantsync_telemetry_dropped_total",
    "plantsync_link_up",
    "plantsync_link_state",
    "plantsync_link_last_activity_age_seconds",
    "plantsync_link_protocol_info",
    "plantsync_inbox_pending",
    "plantsync_schedule_messages_received_total",
    "plantsync_schedule_messages_settled_total",
    "plantsync_schedule_orders_applied_total",
    "plantsync_schedule_update_latency_seconds_count",
    "plantsync_confirmations_total",
)


def link_config(store: Path, broker: Mosquitto) -> AgentConfig:
    """No OPC UA source; schedules go to the agent's own schedule; an API token for POSTs."""
    base = agent_config(store, broker.url, _unused_opcua_server())
    api = ApiConfig(port=0, token=SecretStr(TOKEN))
    return base.model_copy(update={"opcua": [], "api": api})


def _unused_opcua_server() -> OpcUaServerConfig:
    return OpcUaServerConfig.model_validate(
        {
            "name": "none",
            "endpoint": f"opc.tcp://127.0.0.1:{free_port()}/",
            "machines": [{"id": "m", "tags": [{"name": "t", "node_id": "ns=2;s=t"}]}],
        }
    )


@contextlib.asynccontextmanager
async def _api(agent: Agent) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running agent's API, once it listens and its links are built."""
    await eventually(lambda: agent.api_port is not None and agent.uplink is not None, within=10)
    url = f"http://127.0.0.1:{agent.api_port}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as api:
        yield api


async def test_every_metric_exists_and_a_schedule_moves_publish_ack_and_latency(
    broker: Mosquitto, tmp_path: Path
) -> None:
    hq = Hq(broker.url)
    config = link_config(tmp_path / "s.db", broker)
    async with recording(broker.url) as hub, running_agent(config) as agent, _api(agent) as api:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        before = await scrape(api)
        acked_before = value(before, "plantsync_messages_acked_total")
        message = await hq.release(order("JO-1"))
        await hub.wait_for(lambda: "applied" in outcomes(hub, message["id"]), within=30)
        # The broker's PUBACKs are counted when their rows are deleted, in batches: wait for
        # both of this schedule's acks (accepted, applied), whatever was counted before.
        await eventually(lambda: _acked(agent) >= acked_before + 2, within=10)
        after = await scrape(api)

    names = {name for name, _ in after}
    assert [name for name in EVERY_METRIC if name not in names] == []
    assert value(after, "plantsync_link_up", link="hub") == 1
    assert value(after, "plantsync_link_state", link="hub", state="up") == 1
    assert value(after, "plantsync_link_state", link="hub", state="backoff") == 0
    # protocol "auto": Mosquitto accepts MQTT 5, the first one tried
    assert value(after, "plantsync_link_protocol_info", link="hub", version="5") == 1
    assert value(after, "plantsync_link_last_activity_age_seconds", link="hub") < 30
    published = "plantsync_messages_published_total"
    acked = "plantsync_messages_acked_total"
    assert value(after, published) >= value(before, published) + 2  # accepted, applied
    assert value(after, acked) >= value(before, acked) + 2
    assert value(after, "plantsync_schedule_update_latency_seconds_count") == 1
    assert value(after, "plantsync_schedule_messages_settled_total", outcome="applied") == 1


async def test_a_stopped_broker_drops_link_up_and_the_outbox_fills_then_drains(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = link_config(tmp_path / "s.db", broker)
    async with running_agent(config) as agent, _api(agent) as api:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        connected = await scrape(api)

        broker.stop()
        await eventually(lambda: agent.health["hub"].state.value != "up", within=20)
        for number in range(3):
            body = confirmation(f"JO-{number}", confirmation_id=f"c-{number}-{new_message_id()}")
            answer = await api.post("/api/v1/confirmations", headers=AUTH, json=body)
            assert answer.status_code == 202
        down = await scrape(api)

        broker.start()
        await eventually(lambda: agent.health["hub"].connects >= 2, within=20)
        acked_while_down = value(down, "plantsync_messages_acked_total")
        await eventually(lambda: _acked(agent) >= acked_while_down + 3, within=20)
        drained = await scrape(api)

    assert value(connected, "plantsync_link_up", link="hub") == 1
    assert value(down, "plantsync_link_up", link="hub") == 0
    assert value(down, "plantsync_link_failures_total", link="hub") >= 1
    assert value(down, "plantsync_outbox_depth", lane="business") >= 3
    assert value(down, "plantsync_outbox_oldest_age_seconds", lane="business") >= 0
    assert value(drained, "plantsync_link_up", link="hub") == 1
    assert value(drained, "plantsync_outbox_depth", lane="business") == 0


def _acked(agent: Agent) -> int:
    return agent.uplink.counters.acked if agent.uplink is not None else 0
