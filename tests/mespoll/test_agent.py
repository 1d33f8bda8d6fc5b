"""The agent, built by the composition root, polling the simulated MES over real HTTP and
publishing to a real Mosquitto: MES signals reach HQ beside machine state, each endpoint is a
link of its own on the status API and in the metrics."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx

from plantsync.config.model import (
    AgentConfig,
    ApiConfig,
    HubConfig,
    PolicyConfig,
    SiteConfig,
    StoreConfig,
)
from plantsync.sim.mes import SimulatedMes
from plantsync.sim.mes_endpoints import poll_endpoints
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.support import FAST_RECONNECT, SITE, eventually, recording, running_agent


def _config(store: Path, broker_url: str, mes: SimulatedMes) -> AgentConfig:
    return AgentConfig(
        site=SiteConfig(id=SITE, timezone="Europe/Berlin"),
        hub=HubConfig(url=broker_url, keepalive=timedelta(seconds=5)),
        store=StoreConfig(path=store),
        mes_poll=poll_endpoints(mes.url, interval=timedelta(milliseconds=200)),
        api=ApiConfig(port=0),
        policy=PolicyConfig(snapshot_interval=timedelta(0)),
        reconnect=FAST_RECONNECT,
        shutdown_timeout=timedelta(seconds=5),
    )


async def test_mes_signals_reach_the_hub_and_each_endpoint_is_a_link(
    mes: SimulatedMes, broker: Mosquitto, tmp_path: Path
) -> None:
    for _ in range(3):
        mes.tick()
    mes.add_downtime("press-2", "CHG-02", planned=True)
    mes.add_workorder("WO-1001", "RUN", good=10)

    async with (
        recording(broker.url) as hq,
        running_agent(_config(tmp_path / "store.db", broker.url, mes)) as agent,
    ):
        await hq.wait_for(
            lambda: (
                {
                    "equipment.downtime",
                    "work.status",
                    "production.throughput",
                    "production.yield",
                    "equipment.capability",
                }
                <= {m["type"] for m in hq.business}
            ),
            within=30,
        )
        await eventually(lambda: agent.health["mes-poll:downtime"].state.value == "up", 10)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.api_port}") as api:
            metrics = (await api.get("/metrics")).text
            status = (await api.get("/api/v1/status")).json()
        assert agent.scheduler is not None
        assert str(agent.scheduler.timezone) == "Europe/Berlin"
        assert [job.id for job in agent.scheduler.get_jobs()] == ["retention"]

    types = Counter(m["type"] for m in hq.business)
    assert types["production.throughput"] >= 9  # three ticks of three machines
    downtime = [m for m in hq.business if m["type"] == "equipment.downtime"]
    assert {m["payload"]["category"] for m in downtime} >= {"planned"}
    assert all(m["source"] == "mes-poll:downtime" for m in downtime)
    assert 'plantsync_link_up{link="mes-poll:downtime"} 1.0' in metrics
    assert 'plantsync_link_session_count{counter="records",link="mes-poll:throughput"}' in metrics
    assert "mes-poll:capacity" in str(status)
