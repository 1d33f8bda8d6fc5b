"""Scenario 3, backlog drain: a long outage's backlog sent to the hub while live data flows.

    outbox (N rows, prefilled) ─┐
    SimulatedPlant (OPC UA) ────┼─▶ plantsync run (its own process) ─QoS 1─▶ Mosquitto ─▶ consumer
    confirmations (local API) ──┘                                                 (own process)

N = 1,000,000 (50,000 with --quick) telemetry rows of 300 bytes for the plant's machines are
committed to the store before the agent starts. Then the agent connects and drains them while
the plant keeps changing (``LIVE_CHANGES`` per second) and the MES posts production
confirmations (business lane, ``LIVE_CONFIRMATIONS`` per second). The consumer counts the
backlog and times every live message (arrival - event_time).

Ceiling, same run, same broker, same consumer subscribed: raw paho QoS 1 publishing N messages
with PUBACK counting (bench/raw_paho.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from bench.common import (
    API_TOKEN,
    BACKLOG_MARKER,
    CEILING_MARKER,
    AgentProcess,
    Consumer,
    ConsumerResult,
    agent_config,
    backlog_records,
    file_mb,
    free_ports,
    prefill,
    raw_paho_qos1,
)
from bench.report import Figure
from plantsync.contracts import Topics
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.localbroker import Mosquitto

SCENARIO = "drain"
SITE = "bench-drain"
MACHINES = tuple(f"press-{n}" for n in range(1, 11))
LIVE_CHANGES = 50  # per second, one tag of one machine each
LIVE_CONFIRMATIONS = 5  # per second


def run(quick: bool) -> list[Figure]:
    """The drain figures: rate vs raw paho, time to empty, live latency, size, peak RSS."""
    return asyncio.run(_run(50_000 if quick else 1_000_000))


async def _run(count: int) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as scratch:
        root = Path(scratch)
        broker_port, plant_port, api_port = free_ports(3)
        topics = Topics("plantsync/v1", SITE)
        store = root / "store.db"
        await prefill(store, backlog_records(count, MACHINES, topics))
        size_mb = file_mb(store)
        with Mosquitto(
            root / "broker", port=broker_port, persistence=False, max_queued_messages=0
        ) as broker:
            ceiling = await _ceiling(broker.port, count)
            async with SimulatedPlant(
                port=plant_port, machines=MACHINES, tick=None, job_control=False
            ) as plant:
                config = agent_config(
                    site=SITE,
                    broker_port=broker.port,
                    store=store,
                    api_port=api_port,
                    opcua=[_dump(plant.server_config(name="line-1"))],
                    policy={"snapshot_interval": "0s"},
                )
                agent = AgentProcess(config, root / "agent")
                measured = await _drain(plant, agent, broker.port, topics.root, count)
    return _figures(count, ceiling, size_mb, *measured)


async def _ceiling(port: int, count: int) -> float:
    consumer = Consumer(port, "bench/#", match=CEILING_MARKER, until=count)
    await consumer.start()
    rate = await raw_paho_qos1(port, count)
    await consumer.result(within=60)
    return rate


async def _drain(
    plant: SimulatedPlant, agent: AgentProcess, broker_port: int, root: str, count: int
) -> tuple[ConsumerResult, float, float, float]:
    consumer = Consumer(broker_port, f"{root}/#", match=BACKLOG_MARKER, until=count, linger=3.0)
    await consumer.start()
    started = time.time()
    await agent.start()
    live = [
        asyncio.create_task(_change(plant), name="live-changes"),
        asyncio.create_task(_confirm(agent.api_port), name="live-confirmations"),
    ]
    try:
        result = await consumer.result(within=900)
    finally:
        for task in live:
            task.cancel()
        await asyncio.gather(*live, return_exceptions=True)
        rss, cpu = agent.peak_rss_mb(), agent.cpu_seconds()
        await agent.stop()
    return result, result.matched_last - started, rss, cpu


async def _change(plant: SimulatedPlant) -> None:
    """Change one machine's speed ``LIVE_CHANGES`` times a second, round-robin."""
    step = 0
    while True:
        machine = MACHINES[step % len(MACHINES)]
        await plant.set_value(machine, "speed", float(step))
        step += 1
        await asyncio.sleep(1 / LIVE_CHANGES)


async def _confirm(api_port: int) -> None:
    """Post a partial production confirmation ``LIVE_CONFIRMATIONS`` times a second."""
    url = f"http://127.0.0.1:{api_port}/api/v1/confirmations"
    step = 0
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with httpx.AsyncClient(headers=headers) as client:
        while True:
            now = datetime.now(UTC).isoformat()
            body = {
                "confirmation_id": f"C-{step}",
                "order_id": f"JO-{step % 10}",
                "revision": 1,
                "good_quantity": {"value": "1", "unit": "pcs"},
                "scrap_quantity": {"value": "0", "unit": "pcs"},
                "actual_start": now,
                "actual_end": now,
                "final": False,
            }
            with contextlib.suppress(httpx.HTTPError):
                (await client.post(url, json=body)).raise_for_status()
            step += 1
            await asyncio.sleep(1 / LIVE_CONFIRMATIONS)


def _dump(config: BaseModel) -> dict[str, Any]:
    return config.model_dump(mode="json", exclude_defaults=True)


def _figures(
    count: int,
    ceiling: float,
    size_mb: float,
    result: ConsumerResult,
    since_start: float,
    rss: float,
    cpu: float,
) -> list[Figure]:
    case = f"{count:,} backlog + live"
    seconds = result.matched_last - result.matched_first
    rate = result.matched / seconds if seconds > 0 else 0.0
    notes = {
        "delivered": result.matched,
        "seconds_from_agent_start": round(since_start, 1),
        "agent_cpu_seconds": round(cpu, 1),
    }
    figures = [
        Figure(SCENARIO, case, "drain rate", "msg/s", rate, ceiling, "raw paho QoS 1",
               "≥ 0.8x ceiling", rate >= 0.8 * ceiling, notes=notes),
        Figure(SCENARIO, case, "time to empty", "s", seconds, count / ceiling,
               "raw paho QoS 1", "< 90 s for 1M", seconds < 90 if count >= 1_000_000 else None,
               higher_is_better=False),
    ]  # fmt: skip
    for kind, label in (("production.confirmation", "business"), ("machine.state", "telemetry")):
        latency = result.live_during_matched.get(kind, {"count": 0})
        if not latency.get("count"):
            continue
        for quantile in ("p50", "p99"):
            target = "p99 < 1 s" if quantile == "p99" else ""
            met = latency[quantile] < 1.0 if quantile == "p99" else None
            figures.append(
                Figure(SCENARIO, case, f"live {label} latency {quantile} during drain", "ms",
                       latency[quantile] * 1000, target=target, met=met, higher_is_better=False,
                       notes={"messages": int(latency["count"])})
            )  # fmt: skip
    figures += [
        Figure(SCENARIO, case, "database size (full backlog)", "MB", size_mb,
               higher_is_better=False, notes={"bytes_per_message": round(size_mb * 1e6 / count)}),
        Figure(SCENARIO, case, "agent peak RSS", "MB", rss, higher_is_better=False),
    ]  # fmt: skip
    return figures
