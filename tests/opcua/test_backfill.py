"""History backfill end to end: an asyncua server that historizes into SQLite, a TCP proxy that
cuts the agent's link to it while values change, a real Mosquitto and an HQ consumer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.history_sql import HistorySQLite

from chaos.proxy import Proxy
from plantsync.agent.supervisor import LinkState
from plantsync.config.plant import MachineConfig, TagConfig
from plantsync.contracts.machine import HistoryGapMessage
from plantsync.sim.plant import NAMESPACE, SimulatedPlant
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.support import HubRecorder, agent_config, eventually, recording, running_agent

pytestmark = pytest.mark.slow

GAP_SECONDS = 30.0
"""The cut issue 18 names (its must-show). A 6 s cut would take the same path (one history
read: the agent asks up to 1000 values per node and request, 30 s give 300) in a fifth of the
time; the literal acceptance is kept here, the shorter cuts are in test_gaps.py."""
RATE = 10  # values a second written to each changing tag


@contextlib.asynccontextmanager
async def proxied(plant: SimulatedPlant) -> AsyncIterator[Proxy]:
    proxy = Proxy(plant.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@dataclass
class Historian:
    """Two variables on the plant's server: ``kept`` historized into SQLite (numeric node ids:
    asyncua's SQLite storage refuses '-' in table names), ``lost`` not."""

    kept: Node
    lost: Node

    async def write(self, values: range) -> None:
        for value in values:
            now = cast(ua.DateTime, datetime.now(UTC))
            for node in (self.kept, self.lost):
                variant = ua.Variant(float(value), ua.VariantType.Double)
                await node.write_value(
                    ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now)
                )
            await asyncio.sleep(1 / RATE)


async def historian(plant: SimulatedPlant, database: Path) -> Historian:
    server = plant.server
    index = await server.get_namespace_index(NAMESPACE)
    oven = await server.nodes.objects.add_object(
        ua.NodeId.from_string(f"ns={index};i=9000"), f"{index}:oven"
    )
    kept = await oven.add_variable(
        ua.NodeId.from_string(f"ns={index};i=9001"), f"{index}:kept", 0.0
    )
    lost = await oven.add_variable(
        ua.NodeId.from_string(f"ns={index};i=9002"), f"{index}:lost", 0.0
    )
    storage = HistorySQLite(str(database))
    server.iserver.history_manager.set_storage(storage)
    await storage.init()
    await server.historize_node_data_change(kept, period=None, count=0)  # type: ignore[arg-type]
    return Historian(kept, lost)


def speeds(hub: HubRecorder, machine: str) -> list[tuple[float, bool]]:
    """(value, historical) of every value of tag ``speed`` the hub received, duplicates (same
    message id) removed."""
    seen: set[str] = set()
    found = []
    for message in hub.messages:
        if message["id"] in seen or message["payload"]["machine_id"] != machine:
            continue
        seen.add(message["id"])
        found += [
            (value["value"], message["historical"])
            for value in message["payload"]["values"]
            if value["tag"] == "speed"
        ]
    return found


async def test_after_a_30_s_cut_hq_has_every_value_of_the_gap_exactly_once(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    oven = await historian(opcua_plant, tmp_path / "history.db")
    async with proxied(opcua_plant) as proxy:
        machines = [
            MachineConfig(
                id=machine, tags=[TagConfig(name="speed", node_id=node.nodeid.to_string())]
            )
            for machine, node in (("press-1", oven.kept), ("press-2", oven.lost))
        ]
        server = opcua_plant.server_config(
            "line-1",
            endpoint=f"opc.tcp://127.0.0.1:{proxy.port}/plantsync/",
            machines=machines,
            backfill="history",
        )
        config = agent_config(tmp_path / "store.db", broker.url, server)
        link = "opcua:line-1"
        gap_count = int(GAP_SECONDS * RATE)
        last = 10 + gap_count + 10
        async with recording(broker.url) as hub, running_agent(config) as agent:
            await eventually(lambda: agent.health[link].state is LinkState.UP, 20)
            await oven.write(range(1, 11))
            await hub.wait_for(lambda: (10.0, False) in speeds(hub, "press-1"), within=20)

            proxy.refuse()
            await eventually(lambda: agent.health[link].state is not LinkState.UP, 20)
            await oven.write(range(11, 11 + gap_count))
            proxy.heal()
            await eventually(lambda: agent.health[link].state is LinkState.UP, 30)
            await oven.write(range(11 + gap_count, last + 1))

            def complete() -> bool:
                return {value for value, _ in speeds(hub, "press-1")} >= set(range(1, last + 1))

            await hub.wait_for(complete, within=60)
            await hub.wait_for(lambda: bool(gaps(hub)), within=20)

    received = speeds(hub, "press-1")
    values = sorted(value for value, _ in received)
    # every value exactly once: the initial 0.0, then 1 … last (live, historical, live)
    assert values == [float(n) for n in range(last + 1)]
    # The initial 0.0 may be committed before the hub's first connect, and what waits in the
    # outbox at a connect goes out as backlog, historical too (issue 16): leave it out here.
    historical = sorted(value for value, flag in received if flag and value > 0)
    assert historical == [float(n) for n in range(11, 10 + gap_count)]  # the gap but its last
    [gap] = gaps(hub)
    assert (gap.payload.machine_id, gap.payload.tag, gap.payload.reason) == (
        "press-2",
        "speed",
        "no-history",
    )
    assert gap.payload.stream == "machine/press-2"
    assert gap.payload.start < gap.payload.end


def gaps(hub: HubRecorder) -> list[HistoryGapMessage]:
    found: list[dict[str, Any]] = [m for m in hub.business if m["type"] == "history.gap"]
    return [HistoryGapMessage.model_validate(message) for message in found]
