"""Scenario 4, schedule round trip: HQ publishes → applied at the simulated plant → ack at HQ.

    HQ (this process, HubConnection) ─down/schedule─▶ Mosquitto ─▶ plantsync run (own process)
         ▲                                                              │ inbox, policy, apply
         └──────────── up/ack "applied" ◀── Mosquitto ◀── outbox ◀──────┘ via ISA-95 Job Control
                                                                          (SimulatedPlant, OPC UA)

Each message releases one order. ``latency``: one order at a time, publish → final ack, p50 and
p99. ``orders/s``: a burst of orders published back to back, first publish → last final ack.
Both with every order on 1 work center, and spread over 100. No ceiling: the target is absolute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from bench.common import AgentProcess, agent_config, free_ports
from bench.report import Figure
from plantsync.config.model import HubConfig
from plantsync.contracts import AckOutcome, ScheduleAckMessage, Topics
from plantsync.drivers.mqtt import HubConnection
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.hubtools import is_final, prepare_down_message
from plantsync.tools.localbroker import Mosquitto

SCENARIO = "roundtrip"
SITE = "bench-roundtrip"


def run(quick: bool) -> list[Figure]:
    sizes = (30, 50) if quick else (300, 500)  # orders timed one by one, orders in the burst
    figures: list[Figure] = []
    for work_centers in (1, 100):
        figures += asyncio.run(_run(work_centers, *sizes))
    return figures


class _Hq:
    """HQ: publishes releases with consecutive seq and collects the final acks by id."""

    def __init__(self, hub: HubConnection, topics: Topics, work_centers: int) -> None:
        self._hub, self._topics, self._work_centers = hub, topics, work_centers
        self._seq = 0
        self.finals: dict[str, tuple[float, AckOutcome]] = {}
        self.arrived = asyncio.Event()

    async def listen(self) -> None:
        async for message in self._hub.messages():
            with contextlib.suppress(ValidationError):
                ack = ScheduleAckMessage.model_validate_json(message.payload)
                if is_final(ack.payload):
                    self.finals[ack.payload.original_id] = (
                        time.perf_counter(),
                        ack.payload.outcome,
                    )
                    self.arrived.set()

    def release(self) -> tuple[str, float, asyncio.Future[None]]:
        """Publish the next order; its message id, when, and the PUBACK future."""
        self._seq += 1
        start = datetime.now(UTC) + timedelta(days=30)  # beyond any frozen horizon
        center = f"wc-{self._seq % self._work_centers}"
        order = {
            "order_id": f"JO-{self._seq}",
            "revision": 1,
            "product_id": "PRD-100",
            "quantity": {"value": "10", "unit": "pcs"},
            "work_center": center,
            "equipment_id": center,
            "planned_start": start.isoformat(),
            "planned_end": (start + timedelta(hours=1)).isoformat(),
            "priority": 10,
            "request_state": "Released",
        }
        message = prepare_down_message(
            {"type": "schedule.release", "payload": {"orders": [order]}},
            site=SITE,
            default_seq=lambda: self._seq,
            source="hq:bench",
        )
        sent = time.perf_counter()
        return (
            message.message_id,
            sent,
            self._hub.publish(self._topics.down_schedule, message.payload),
        )

    async def final(self, message_id: str, within: float = 30.0) -> float:
        async with asyncio.timeout(within):
            while message_id not in self.finals:
                self.arrived.clear()
                await self.arrived.wait()
        return self.finals[message_id][0]


async def _run(work_centers: int, one_by_one: int, burst: int) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-roundtrip-") as scratch:
        root = Path(scratch)
        broker_port, plant_port, api_port = free_ports(3)
        topics = Topics("plantsync/v1", SITE)
        with Mosquitto(root / "broker", port=broker_port, persistence=False) as broker:
            plant = SimulatedPlant(port=plant_port, tick=None, job_seconds_per_unit=3600)
            assert plant.job_control is not None
            plant.job_control.max_job_orders = 1_000_000
            async with plant:
                jobcontrol = plant.jobcontrol_config().model_dump(
                    mode="json", exclude_defaults=True
                )
                config = agent_config(
                    site=SITE,
                    broker_port=broker.port,
                    store=root / "store.db",
                    api_port=api_port,
                    jobcontrol=jobcontrol,
                )
                agent = AgentProcess(config, root / "agent")
                await agent.start()
                try:
                    hub = HubConfig(url=broker.url)
                    async with HubConnection(hub, client_id="bench-hq", clean_start=True) as link:
                        await link.subscribe([(topics.ack, 1)])
                        hq = _Hq(link, topics, work_centers)
                        listener = asyncio.create_task(hq.listen(), name="hq-acks")
                        try:
                            await _warm_up(hq)
                            latencies = await _one_by_one(hq, one_by_one)
                            rate = await _burst(hq, burst)
                        finally:
                            listener.cancel()
                            await asyncio.gather(listener, return_exceptions=True)
                    applied = sum(
                        1 for _, outcome in hq.finals.values() if outcome is AckOutcome.APPLIED
                    )
                finally:
                    await agent.stop()
    return _figures(work_centers, latencies, rate, applied, len(hq.finals))


async def _warm_up(hq: _Hq) -> None:
    """The first order waits for the plant link (Job Control) to come up; not timed."""
    message_id, _, _ = hq.release()
    await hq.final(message_id, within=60)


async def _one_by_one(hq: _Hq, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        message_id, sent, _ = hq.release()
        latencies.append(await hq.final(message_id) - sent)
    return sorted(latencies)


async def _burst(hq: _Hq, count: int) -> float:
    released = [hq.release() for _ in range(count)]
    started = released[0][1]
    last = max([await hq.final(message_id, within=120) for message_id, _, _ in released])
    return count / (last - started)


def _figures(
    work_centers: int, latencies: list[float], rate: float, applied: int, finals: int
) -> list[Figure]:
    case = f"{work_centers} work center{'s' if work_centers > 1 else ''}"
    notes = {"orders_timed": len(latencies), "applied": applied, "final_acks": finals}

    def at(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return [
        Figure(SCENARIO, case, "publish → applied ack p50", "ms", at(0.5),
               higher_is_better=False, notes=notes),
        Figure(SCENARIO, case, "publish → applied ack p99", "ms", at(0.99),
               target="p99 < 250 ms", met=at(0.99) < 250, higher_is_better=False, notes=notes),
        Figure(SCENARIO, case, "orders/s (burst)", "orders/s", rate, notes=notes),
    ]  # fmt: skip


if __name__ == "__main__":
    print(json.dumps([f.__dict__ for f in run(quick=True)], default=str, indent=1))
