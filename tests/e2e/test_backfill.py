"""Live first, the backlog beside it (issue 16): a real Mosquitto goes away while a real
asyncua plant keeps changing and the MES confirms; when it comes back, business messages go
first, new telemetry goes out at once, and the backlog follows marked ``historical``, with its
original seq and event time, at the configured rate, in the configured order, cut off at the
configured age (what is cut off is counted as evicted)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from plantsync.agent.backfill import BackfillStatus
from plantsync.agent.service import Agent
from plantsync.config.model import AgentConfig
from plantsync.config.uplink import BackfillOrder, UplinkConfig
from plantsync.contracts import StreamConsumer
from plantsync.contracts.orders import ProductionConfirmation
from plantsync.contracts.schedule import Quantity
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.cli import main
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.support import HubRecorder, agent_config, eventually, recording, running_agent

pytestmark = pytest.mark.slow

MACHINES = ("press-1", "press-2", "lathe-1")
RATE = 10
"""Backlog messages per second in the rate-limited test; the bucket holds one second's worth."""


def _config(tmp_path: Path, broker: Mosquitto, plant: SimulatedPlant, **uplink: Any) -> AgentConfig:
    config = agent_config(tmp_path / "store.db", broker.url, plant.server_config("line-1"))
    return config.model_copy(update={"uplink": UplinkConfig(**uplink)})


async def _change(plant: SimulatedPlant, seconds: float, start: int) -> int:
    """Change every machine's speed 20 times a second for ``seconds``; returns the next step."""
    end = start + int(seconds * 20)
    for step in range(start, end):
        for machine in MACHINES:
            await plant.set_value(machine, "speed", float(step))
        await asyncio.sleep(0.05)
    return end


async def _confirm(agent: Agent, number: int) -> str:
    assert agent.business is not None
    now = datetime.now(UTC)
    written = await agent.business.confirmation(
        ProductionConfirmation(
            confirmation_id=f"C-{number}",
            order_id="JO-1",
            revision=1,
            good_quantity=Quantity(value=Decimal(number), unit="pcs"),
            scrap_quantity=Quantity(value=Decimal(0), unit="pcs"),
            actual_start=now - timedelta(minutes=1),
            actual_end=now,
            final=False,
        ),
        source="test",
    )
    return written.message_id


async def _outage(hub: HubRecorder, broker: Mosquitto, agent: Agent) -> None:
    """Wait until every machine was seen, then stop the broker and wait for the agent to notice."""
    await hub.wait_for(lambda: len(hub.streams()) == len(MACHINES), within=30)
    await asyncio.to_thread(broker.stop)
    await eventually(lambda: agent.health["hub"].state.value != "up", within=15)


def _backfill(agent: Agent) -> BackfillStatus:
    assert agent.uplink is not None
    return agent.uplink.backfill


async def _new_backlog(agent: Agent, since: datetime) -> BackfillStatus:
    """The backfill of the first connection after ``since`` (not the one at start-up)."""
    await eventually(lambda: (_backfill(agent).started_at or 0) > since.timestamp(), 15)
    return _backfill(agent)


def _after(hub: HubRecorder, since: float) -> list[dict[str, Any]]:
    """What arrived first at ``since`` or later: a broker's redelivery of an older message
    after its restart is left out."""
    before = {document["id"] for at, document in hub.arrivals if at < since}
    return [
        document for at, document in hub.arrivals if at >= since and document["id"] not in before
    ]


def _telemetry(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in documents if d["type"] == "machine.state"]


async def test_after_an_outage_business_goes_first_live_telemetry_at_once_and_the_backlog_beside_it(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    config = _config(tmp_path, broker, opcua_plant, backfill_rate=RATE)
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await _outage(hub, broker, agent)
        step = await _change(opcua_plant, 4, start=1)
        confirmations = [await _confirm(agent, number) for number in (1, 2)]
        down_until = datetime.now(UTC)
        back = time.monotonic()
        await asyncio.to_thread(broker.start)
        backlog = (await _new_backlog(agent, since=down_until)).total
        await _change(opcua_plant, 1, start=step)  # live while the backlog drains
        card, metrics, printed = await _progress_seen(agent)
        await eventually(lambda: _backfill(agent).state == "done", within=backlog / RATE + 30)

    arrived = _after(hub, back)
    telemetry = _telemetry(arrived)
    historical = [i for i, d in enumerate(telemetry) if d["historical"]]
    live = [i for i, d in enumerate(telemetry) if not d["historical"]]
    assert len(historical) >= backlog > 3 * RATE, "the backlog outlasts the rate's first seconds"
    assert live, "new telemetry went out"
    assert live[0] < historical[-1], "new telemetry went out before the backlog was done"

    positions: dict[str, int] = {}
    for index, document in enumerate(arrived):  # a redelivery does not move the first arrival
        positions.setdefault(document["id"], index)
    first_historical = min(positions[d["id"]] for d in telemetry if d["historical"])
    assert all(positions[c] < first_historical for c in confirmations), "business first"
    assert not any(d.get("historical") for d in arrived if d["type"] != "machine.state")

    for document in telemetry:  # the backlog keeps the time it happened, the live ones are new
        happened = datetime.fromisoformat(document["event_time"])
        assert (happened <= down_until) is document["historical"], document

    consumer = _consumed(hub)
    assert list(consumer.gaps) == [], "live seqs running ahead of the backfill are no gap"
    assert consumer.flush() == [], "the backfill filled every hole"
    for stream, sequences in hub.streams().items():
        assert sequences == list(range(1, len(sequences) + 1)), f"{stream}: original seqs"

    assert "<progress" in card
    assert f"of {backlog} backlog messages sent" in card
    assert "plantsync_backfill_draining 1.0" in metrics
    assert f"plantsync_backfill_backlog_messages {float(backlog)}" in metrics
    assert "plantsync_backfill_eta_seconds" in metrics
    assert "backfill: draining, " in printed
    assert f" of {backlog} sent" in printed

    window = 2.0  # at most a full bucket plus RATE a second, whatever the broker's pace
    backfilled = {d["id"] for d in telemetry if d["historical"]}
    times = sorted(
        {d["id"]: at for at, d in reversed(hub.arrivals) if d["id"] in backfilled}.values()
    )
    assert len(times) == len(backfilled) > RATE * (window + 2)
    assert sum(1 for at in times if at - times[0] <= window) <= RATE + RATE * (window + 0.5)


async def _progress_seen(agent: Agent) -> tuple[str, str, str]:
    """While the backlog drains: the status page's card, /metrics, ``plantsync status``."""
    url = f"http://127.0.0.1:{agent.api_port}"
    async with httpx.AsyncClient(base_url=url) as client:
        fragment = (await client.get("/status/fragment")).json()
        metrics = (await client.get("/metrics")).text
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert await asyncio.to_thread(main, ["status", "--url", url]) == 0
    return fragment["sections"]["buffer"], metrics, out.getvalue()


def _consumed(hub: HubRecorder) -> StreamConsumer:
    """HQ's consumer fed with every stream message in arrival order."""
    consumer = StreamConsumer()
    for _, document in hub.arrivals:
        if "seq" in document:
            consumer.accept(document)
    return consumer


async def test_newest_first_sends_the_backlog_from_its_end_and_the_cutoff_drops_old_telemetry(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    config = _config(
        tmp_path,
        broker,
        opcua_plant,
        backfill_order=BackfillOrder.NEWEST_FIRST,
        backfill_cutoff=timedelta(seconds=3),
    )
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await _outage(hub, broker, agent)
        assert agent.store is not None
        step = await _change(opcua_plant, 1.5, start=1)  # older than the cutoff at reconnect
        old = await _seqs_committed(agent)
        await asyncio.sleep(4)
        await _change(opcua_plant, 1.5, start=step)  # younger than the cutoff
        evicted_before = (await agent.store.outbox.stats()).evicted_total
        down_until = datetime.now(UTC)
        back = time.monotonic()
        await asyncio.to_thread(broker.start)
        await _new_backlog(agent, since=down_until)
        await eventually(lambda: _backfill(agent).state == "done", 30)
        status = _backfill(agent)
        evicted = (await agent.store.outbox.stats()).evicted_total - evicted_before

    assert status.expired == evicted > 0, "what the cutoff dropped is counted as evicted"
    assert status.sent + status.expired == status.total
    by_stream: dict[str, list[int]] = defaultdict(list)
    for document in _telemetry(_after(hub, back)):
        if document["historical"]:
            by_stream[document["stream"]].append(document["seq"])
    for stream, sequences in by_stream.items():
        assert sequences == sorted(sequences, reverse=True), f"{stream}: newest first"
        assert min(sequences) > old[stream], f"{stream}: nothing from before the cutoff"
    consumer = _consumed(hub)
    assert list(consumer.gaps) == [], "nothing is a gap while the backfill may still fill it"
    gaps = consumer.flush()
    assert sum(gap.missing for gap in gaps) == evicted, "HQ sees exactly the evicted ones missing"


async def _seqs_committed(agent: Agent) -> dict[str, int]:
    assert agent.store is not None
    await asyncio.sleep(0.5)  # the last publish cycle reaches the outbox
    sequences = await agent.store.outbox.last_sequences()
    return {stream: seq for stream, seq in sequences.items() if stream.startswith("machine/")}


async def test_the_hub_rate_bounds_every_lane_together_and_business_goes_first_within_it(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    hub_rate = 2 * RATE
    config = _config(tmp_path, broker, opcua_plant, hub_rate=hub_rate)
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await _outage(hub, broker, agent)
        step = await _change(opcua_plant, 4, start=1)
        down_until = datetime.now(UTC)
        back = time.monotonic()
        await asyncio.to_thread(broker.start)
        backlog = (await _new_backlog(agent, since=down_until)).total
        confirmations = [await _confirm(agent, number) for number in (1, 2)]
        await _change(opcua_plant, 0.5, start=step)  # live beside the backlog
        await eventually(lambda: _backfill(agent).state == "done", within=backlog / hub_rate + 30)
        await hub.wait_for(lambda: set(confirmations) <= {d["id"] for d in hub.business}, 10)

    arrived = [d for d in _after(hub, back) if "seq" in d]  # the outbox's rows, every lane
    positions = {d["id"]: index for index, d in reversed(list(enumerate(arrived)))}

    window = 2.0  # at most a full bucket plus hub_rate a second, whatever the lane
    firsts = {d["id"]: at for at, d in reversed(hub.arrivals) if d["id"] in positions}
    times = sorted(firsts.values())
    assert len(times) > hub_rate * (window + 2), "the limit had something to bound"
    busiest = max(sum(1 for at in times if 0 <= at - start <= window) for start in times)
    assert busiest <= hub_rate + hub_rate * (window + 0.5)
    last_historical = max(positions[d["id"]] for d in arrived if d.get("historical"))
    assert all(positions[c] < last_historical for c in confirmations), "business not starved"
