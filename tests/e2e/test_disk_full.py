"""The disk under the store fills up while the agent runs, end to end: a real tmpfs filled to
the brim, a real Mosquitto, the real agent service and its local API.

While the disk is full: telemetry is shed and counted, a confirmation POST is refused with 507
and a reason, a schedule from HQ is not acknowledged to the broker (so it is delivered again),
the status and metrics raise the alarm. Once space returns the agent resumes by itself, with
nothing committed lost and no sequence number skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from plantsync.agent.service import Agent
from plantsync.config.model import AgentConfig, ApiConfig
from plantsync.contracts.machine import Quality
from plantsync.drivers.base import Reading
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.hq import Hq, order, outcomes
from tests.e2e.support import HubRecorder, eventually, gapless, recording, running_agent
from tests.e2e.test_business_loop import business_config

pytestmark = pytest.mark.slow

TOKEN = "disk-full-token-0123456789abcdef"  # noqa: S105 - a test token
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DISK_BYTES = 4 * 1024 * 1024


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own: the only way to get a real ENOSPC under SQLite."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the suite as root)")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    size = f"size={DISK_BYTES},mode=0700"
    subprocess.run(["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def _fill(directory: Path) -> Path:
    """Write a file until the file system refuses one more byte."""
    filler = directory / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(descriptor, b"\0" * chunk)
    finally:
        os.close(descriptor)
    return filler


@contextlib.asynccontextmanager
async def _api(agent: Agent) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{agent.api_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        yield client


def _confirmation(step: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "confirmation_id": f"JO-1-{step}",
        "order_id": "JO-1",
        "revision": 1,
        "good_quantity": {"value": str(Decimal(step * 10)), "unit": "pcs"},
        "scrap_quantity": {"value": "0", "unit": "pcs"},
        "actual_start": (now - timedelta(minutes=1)).isoformat(),
        "actual_end": now.isoformat(),
        "final": False,
    }


async def _shed_telemetry(agent: Agent) -> None:
    """Submit readings until the pipeline sheds some: the disk refused their commit."""
    assert agent.pipeline is not None
    counters = agent.pipeline.counters
    async with asyncio.timeout(30):
        while counters.dropped == 0:
            batch = [
                Reading(f"press-{n}", "recipe", "x" * 2000, Quality.GOOD, 0, None)
                for n in range(20)
            ]
            await agent.pipeline.submit("opcua:sim", batch)
            await asyncio.sleep(0.01)


def _config(disk: Path, broker: Mosquitto) -> AgentConfig:
    base = business_config(disk / "store.db", broker, None)
    return base.model_copy(update={"api": ApiConfig(port=0, token=SecretStr(TOKEN))})


def _order_stream(hub: HubRecorder) -> list[dict[str, Any]]:
    return [m for m in hub.business if m["type"] == "production.confirmation"]


async def test_a_full_disk_sheds_telemetry_refuses_business_and_recovers_without_restart(
    broker: Mosquitto, tiny_disk: Path
) -> None:
    hq = Hq(broker.url)
    async with recording(broker.url) as hub, running_agent(_config(tiny_disk, broker)) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        before = await hq.release(order("JO-1"))
        await hub.wait_for(lambda: "applied" in outcomes(hub, before["id"]), within=20)
        async with _api(agent) as api:
            assert (
                await api.post("/api/v1/confirmations", headers=AUTH, json=_confirmation(1))
            ).status_code == 202
            await hub.wait_for(lambda: len(_order_stream(hub)) == 1, within=20)

            filler = await asyncio.to_thread(_fill, tiny_disk)
            await _shed_telemetry(agent)
            refused = await api.post("/api/v1/confirmations", headers=AUTH, json=_confirmation(2))
            during = await hq.release(order("JO-2"))
            await eventually(lambda: agent.health["hub"].failures >= 2, within=20)
            status = (await api.get("/api/v1/status")).json()
            metrics = (await api.get("/metrics")).text
            ready = await api.get("/readyz")
            schedule_while_full = (await api.get("/api/v1/schedule")).json()
            assert outcomes(hub, during["id"]) == []  # never committed, so never accepted

            await asyncio.to_thread(filler.unlink)
            await hub.wait_for(lambda: "applied" in outcomes(hub, during["id"]), within=30)
            after = await api.post("/api/v1/confirmations", headers=AUTH, json=_confirmation(3))
            await hub.wait_for(lambda: len(_order_stream(hub)) == 2, within=20)
            recovered = (await api.get("/api/v1/status")).json()

    assert refused.status_code == 507
    assert refused.json()["reason"] == "disk-full"
    assert "full" in refused.json()["detail"]
    assert refused.headers["Retry-After"]
    assert ready.status_code == 503
    assert "disk" in ready.json()["reason"]
    assert status["store"]["disk_full"] is True
    assert status["store"]["writes_refused"] >= 2
    assert any("disk under the store is full" in alarm for alarm in status["store"]["alarms"])
    assert status["outbox"]["telemetry_dropped"] > 0
    assert "plantsync_store_disk_full 1.0" in metrics
    assert "plantsync_telemetry_dropped_total 0.0" not in metrics
    orders = [o["order_id"] for wc in schedule_while_full["work_centers"] for o in wc["orders"]]
    assert orders == ["JO-1"]  # what was committed stays served while the disk is full

    assert after.status_code == 202
    assert recovered["store"]["disk_full"] is False
    assert recovered["store"]["alarms"] == []
    assert outcomes(hub, during["id"]).count("applied") == 1
    confirmations = _order_stream(hub)
    assert [m["payload"]["confirmation_id"] for m in confirmations] == ["JO-1-1", "JO-1-3"]
    assert gapless([m["seq"] for m in confirmations])  # the refused one took no number
    for stream, sequences in hub.streams().items():
        assert gapless(sorted(set(sequences))), stream  # shed telemetry took no number either
