"""The agent starts on a corrupt store: it moves the file aside, starts fresh, asks HQ for the
schedule again, and raises an alarm (status JSON, status page, metrics) that lasts, across
restarts, until plant IT deletes the quarantined file."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from plantsync.agent.service import Agent
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.hq import Hq, order, outcomes
from tests.e2e.support import HubRecorder, eventually, recording, running_agent
from tests.e2e.test_business_loop import business_config
from tests.fixtures.mes import MesServer

pytestmark = pytest.mark.slow


async def _status_metrics_page(agent: Agent) -> tuple[dict[str, Any], str, str]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.api_port}") as api:
        status = (await api.get("/api/v1/status")).json()
        metrics = (await api.get("/metrics")).text
        overview = (await api.get("/status/fragment")).json()["sections"]["overview"]
    return status, metrics, overview


async def test_a_corrupt_store_is_quarantined_and_alarmed_until_its_file_is_deleted(
    broker: Mosquitto, tmp_path: Path
) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(random.Random(5).randbytes(200_000))
    config = business_config(path, broker, None)

    async with recording(broker.url) as hub, running_agent(config) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        await hub.wait_for(
            lambda: any(m["type"] == "resync.request" for m in hub.business), within=20
        )
        status, metrics, overview = await _status_metrics_page(agent)
    store = status["store"]
    quarantine = store["quarantine"]
    moved_to = Path(quarantine["moved_to"])
    assert moved_to.parent == tmp_path
    assert await asyncio.to_thread(lambda: moved_to.stat().st_size) == 200_000
    assert "corrupt" in quarantine["reason"]
    assert store["quarantined_files"] == [str(moved_to)]
    assert str(moved_to) in store["alarms"][0]
    assert "plantsync_store_quarantined_total 1.0" in metrics
    assert "plantsync_store_quarantined_files 1.0" in metrics
    assert 'data-alarm="store"' in overview
    resync = next(m for m in hub.business if m["type"] == "resync.request")
    assert resync["payload"]["reason"] == "startup"

    async with running_agent(config) as agent:  # a restart does not hide it
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        status, metrics, _ = await _status_metrics_page(agent)
        assert "earlier start" in str(status["store"])
        await asyncio.to_thread(moved_to.unlink)  # plant IT looked at it: the acknowledgement
        cleared, metrics_after, overview_after = await _status_metrics_page(agent)
    assert "plantsync_store_quarantined_total 0.0" in metrics
    assert "plantsync_store_quarantined_files 1.0" in metrics
    assert cleared["store"]["alarms"] == []
    assert cleared["store"]["quarantined_files"] == []
    assert "plantsync_store_quarantined_files 0.0" in metrics_after
    assert 'data-alarm="store"' not in overview_after


async def test_orders_a_snapshot_brings_again_after_a_quarantine_take_effect_once_at_the_mes(
    broker: Mosquitto, mes_server: MesServer, tmp_path: Path
) -> None:
    """The fresh store remembers nothing it applied: the MES's idempotency key must."""
    path = tmp_path / "store.db"
    config = business_config(path, broker, mes_server)
    hq = Hq(broker.url)
    async with recording(broker.url) as hub:
        async with running_agent(config) as agent:
            await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
            release = await hq.release(order("JO-1"), order("JO-2"))
            await hub.wait_for(lambda: "applied" in outcomes(hub, release["id"]), within=30)
        await asyncio.to_thread(path.write_bytes, random.Random(7).randbytes(100_000))
        asked_before = _resync_requests(hub)
        async with running_agent(config) as agent:
            await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
            await hub.wait_for(lambda: _resync_requests(hub) > asked_before, within=30)
            snapshot = hq.message(
                "schedule.snapshot", {"orders": [order("JO-1"), order("JO-2")], "as_of_seq": hq.seq}
            )
            await hq.publish(snapshot)
            await hub.wait_for(lambda: "applied" in outcomes(hub, snapshot["id"]), within=30)

    assert mes_server.state.requests == 4, "the snapshot's orders reached the MES again"
    assert sorted(mes_server.state.applied_orders()) == [("JO-1", 1), ("JO-2", 1)], "once each"


def _resync_requests(hub: HubRecorder) -> int:
    return sum(1 for m in hub.business if m["type"] == "resync.request")
