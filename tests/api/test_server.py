"""The API through the real uvicorn server: inside a running agent on 127.0.0.1, port 0."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from plantsync.agent.service import Agent
from plantsync.agent.supervisor import LinkState
from plantsync.app import build_agent
from plantsync.config.model import ApiConfig
from plantsync.errors import ConfigError
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.localbroker import Mosquitto
from plantsync.web.api import create_app
from plantsync.web.apiserver import ApiServer
from tests.api.support import AUTH, TOKEN, attached, client, config, confirmation, down, order
from tests.e2e.support import SITE, agent_config, eventually, running_agent

pytestmark = pytest.mark.slow


def _served(agent: Agent) -> httpx.AsyncClient:
    assert agent.api_port is not None
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.api_port}", timeout=5)


async def _schedule(api: httpx.AsyncClient) -> list[str]:
    answer = await api.get("/api/v1/schedule")
    assert answer.status_code == 200
    return [o["order_id"] for group in answer.json()["work_centers"] for o in group["orders"]]


async def test_a_running_agent_serves_its_schedule_and_takes_confirmations_without_the_hub(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    base = agent_config(tmp_path / "store.db", broker.url, opcua_plant.server_config("line-1"))
    api_config = ApiConfig(port=0, token=SecretStr(TOKEN))
    async with running_agent(base.model_copy(update={"api": api_config})) as agent:
        await eventually(lambda: agent.health["hub"].state is LinkState.UP, within=20)
        assert agent.downlink is not None
        _, release = down("schedule.release", 1, order("JO-1"), site=SITE)
        await agent.downlink.receive(f"plantsync/v1/{SITE}/down/schedule", release)
        async with _served(agent) as api:
            async with asyncio.timeout(10):
                while await _schedule(api) != ["JO-1"]:  # noqa: ASYNC110 - polled over HTTP
                    await asyncio.sleep(0.05)

            await asyncio.to_thread(broker.stop)
            await eventually(lambda: agent.health["hub"].state is not LinkState.UP, within=20)

            answer = await api.get("/api/v1/schedule")
            assert answer.json()["hub_state"] != "up"
            assert await _schedule(api) == ["JO-1"]
            accepted = await api.post("/api/v1/confirmations", headers=AUTH, json=confirmation())
            assert accepted.status_code == 202
            assert agent.store is not None
            assert (await agent.store.outbox.stats()).depth >= 1
            port = agent.api_port
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=5) as after:
            await after.get(f"http://127.0.0.1:{port}/healthz")


async def test_the_server_answers_on_a_free_port_and_stops_within_its_bound(
    tmp_path: Path,
) -> None:
    async with attached(config(tmp_path / "store.db")) as agent:
        server = ApiServer.bind(create_app(agent), agent.config.api, stop_timeout=1)
        serving = asyncio.create_task(server.serve())
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as api:
            assert server.port != 0
            assert (await api.get("/healthz")).status_code == 200
            async with asyncio.timeout(5):
                await server.stop(serving)
        assert serving.done()


async def _chart_points(api: httpx.AsyncClient) -> int:
    """How many points the status page's chart draws for the business lane."""
    buffer = (await api.get("/status/fragment")).json()["sections"]["buffer"]
    found = re.search(r'<polyline [^>]*points="([^"]*)"', buffer)
    assert found is not None
    return len(found.group(1).split())


async def test_the_server_samples_the_outbox_depth_while_it_serves_and_stops_with_it(
    tmp_path: Path,
) -> None:
    async with attached(config(tmp_path / "store.db")) as agent:
        server = ApiServer.bind(create_app(agent), agent.config.api, stop_timeout=1)
        serving = asyncio.create_task(server.serve())
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as api:
            # The first sample is taken as serving starts; the chart adds the current depth.
            async with asyncio.timeout(5):
                while await _chart_points(api) < 2:  # noqa: ASYNC110 - polled over HTTP
                    await asyncio.sleep(0.05)
            async with asyncio.timeout(5):
                await server.stop(serving)
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "depth-history"]

        async with client(agent) as in_process:  # no server, no lifespan: no sampler
            assert await _chart_points(in_process) == 1


async def test_a_port_in_use_stops_the_start_with_a_config_error(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        busy = config(tmp_path / "store.db").model_copy(update={"api": ApiConfig(port=port)})
        agent = build_agent(busy, config_hash="test")

        with pytest.raises(ConfigError) as caught:
            async with asyncio.timeout(10):
                await agent.run(asyncio.Event())

    [problem] = caught.value.problems
    assert problem.key == "api"
    assert f"cannot listen on 127.0.0.1:{port}" in problem.reason
