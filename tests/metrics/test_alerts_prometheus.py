"""The shipped alert rules in a real Prometheus on loopback, scraping a real agent: a malformed
schedule from HQ makes PlantsyncDeadLettersRising fire, carrying the plant's site id.

The other alerts wait minutes (``for:``) before firing; promtool's rule unit tests
(packaging/prometheus/plantsync-alerts.test.yml) fire each of them. The prometheus binary comes
from ``make promtool`` (taken out of Debian's package, not installed); without it the test is
skipped and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from plantsync.agent.supervisor import LinkState
from plantsync.config.model import HubConfig
from plantsync.drivers.mqtt import HubConnection
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.localbroker import Mosquitto, free_port
from tests.e2e.support import SITE, agent_config, running_agent
from tests.metrics.support import prometheus_tool

RULES = Path(__file__).resolve().parents[2] / "packaging" / "prometheus" / "plantsync-alerts.yml"


@contextlib.contextmanager
def prometheus(workdir: Path, target: str) -> Iterator[str]:
    """A Prometheus on a free loopback port scraping ``target`` every second with the shipped
    rules evaluated every second; yields its base URL."""
    executable = prometheus_tool("prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "plantsync", "static_configs": [{"targets": [target]}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                executable,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=log,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def alerts(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The alerts Prometheus holds now (pending and firing); [] while it is not up yet."""
    with contextlib.suppress(httpx.HTTPError):
        answer = await client.get("/api/v1/alerts")
        if answer.status_code == 200:
            found: list[dict[str, Any]] = answer.json()["data"]["alerts"]
            return found
    return []


async def scraped(client: httpx.AsyncClient) -> bool:
    """Prometheus has the agent's dead-letter counter (so a later increase is seen as one)."""
    with contextlib.suppress(httpx.HTTPError):
        answer = await client.get("/api/v1/query", params={"query": "plantsync_dead_letters_total"})
        return answer.status_code == 200 and bool(answer.json()["data"]["result"])
    return False


async def test_a_real_prometheus_fires_dead_letters_rising_for_a_malformed_schedule(
    tmp_path: Path, broker: Mosquitto, opcua_plant: SimulatedPlant
) -> None:
    config = agent_config(tmp_path / "store.db", broker.url, opcua_plant.server_config())
    async with running_agent(config) as agent:
        async with asyncio.timeout(30):
            while any(  # noqa: ASYNC110 - no event to wait on
                health.state is not LinkState.UP for health in agent.health.values()
            ):
                await asyncio.sleep(0.05)
        with prometheus(tmp_path, f"127.0.0.1:{agent.api_port}") as url:
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                async with asyncio.timeout(60):
                    while not await scraped(client):  # noqa: ASYNC110 - polling an HTTP API
                        await asyncio.sleep(0.2)
                assert await alerts(client) == []  # a healthy plant: nothing pending or firing

                hq = HubConfig(url=broker.url)
                async with HubConnection(hq, client_id="hq-test", clean_start=True) as link:
                    await link.publish(f"plantsync/v1/{SITE}/down/schedule", b"{not json", qos=1)

                firing: list[dict[str, Any]] = []
                async with asyncio.timeout(60):
                    while not firing:
                        await asyncio.sleep(0.2)
                        firing = [a for a in await alerts(client) if a["state"] == "firing"]

    assert [alert["labels"]["alertname"] for alert in firing] == ["PlantsyncDeadLettersRising"]
    assert firing[0]["labels"]["site"] == SITE
    assert firing[0]["annotations"]["summary"] == f"site {SITE}: down messages dead-lettered"
