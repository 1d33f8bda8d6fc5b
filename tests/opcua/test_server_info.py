"""What plant IT sees of an OPC UA server: endpoint, security mode, namespace URIs and the
limits it declares, on /api/v1/status and the status page of a running agent."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from plantsync.agent.supervisor import LinkState
from plantsync.sim.plant import NAMESPACE, SimulatedPlant
from tests.e2e.support import agent_config, eventually, running_agent
from tests.fixtures.opcua import free_port

pytestmark = pytest.mark.slow


async def test_the_status_shows_each_servers_endpoint_security_namespaces_and_limits(
    opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    hub = f"mqtt://127.0.0.1:{free_port()}"  # no broker: the OPC UA link is what is looked at
    config = agent_config(tmp_path / "store.db", hub, opcua_plant.server_config("line-1"))
    async with running_agent(config) as agent:
        await eventually(lambda: agent.health["opcua:line-1"].state is LinkState.UP, within=20)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{agent.api_port}", timeout=5
        ) as api:
            status = (await api.get("/api/v1/status")).json()
            page = (await api.get("/")).text

    server = status["links"]["opcua:line-1"]["server"]
    assert server["endpoint"] == opcua_plant.endpoint
    assert (server["security_mode"], server["security_policy"]) == ("None", None)
    assert server["namespaces"][0] == "http://opcfoundation.org/UA/"
    assert NAMESPACE in server["namespaces"]
    assert server["limits"]["max_nodes_per_browse"] == 10000  # what asyncua declares
    assert status["links"]["hub"].get("server") is None
    assert f"{opcua_plant.endpoint} · None" in page
    assert NAMESPACE in page
