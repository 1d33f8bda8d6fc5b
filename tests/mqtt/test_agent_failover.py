"""The agent on a two-node hub (two real Mosquittos): the active node stops under load, the
agent moves to the other; nothing lost, nothing applied twice. Prints the time to resume."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from plantsync.config.model import ReconnectConfig
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.hq import Hq, order, outcomes
from tests.e2e.support import HubRecorder, agent_config, eventually, recording, running_agent
from tests.e2e.test_walking_skeleton import MACHINES, steady_load

pytestmark = pytest.mark.slow


def merged_sequences(*hubs: HubRecorder) -> dict[str, set[int]]:
    """machine.state seqs per stream over every node's HQ consumer, duplicates dropped."""
    seen: set[str] = set()
    streams: dict[str, set[int]] = defaultdict(set)
    for message in [m for hub in hubs for m in hub.messages]:
        if message["id"] not in seen:
            seen.add(message["id"])
            streams[message["stream"]].add(message["seq"])
    return dict(streams)


def last_speeds(*hubs: HubRecorder) -> dict[str, Any]:
    return {m: [v for h in hubs for v in h.values(m, "speed")][-1:] for m in MACHINES}


async def test_the_agent_fails_over_to_the_other_node_and_loses_nothing(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    other = Mosquitto(tmp_path / "node-b", max_queued_messages=100_000)
    other.start()
    try:
        urls = f"{broker.url}, {other.url}"
        config = agent_config(tmp_path / "store.db", urls, opcua_plant.server_config("line-1"))
        config = config.model_copy(update={"reconnect": ReconnectConfig()})  # 1 s … 60 s
        async with (
            recording(broker.url, "hq-a") as node_a,
            recording(other.url, "hq-b") as node_b,
            running_agent(config) as agent,
        ):
            link = agent.health["hub"]
            await node_a.wait_for(lambda: len(node_a.streams()) == len(MACHINES), within=30)
            async with steady_load(opcua_plant, per_second=50) as written:
                await asyncio.sleep(2)
                stopped = time.monotonic()
                await asyncio.to_thread(broker.stop)  # node A goes away, its files kept
                await eventually(lambda: link.connects >= 2, within=30)
                resumed = time.monotonic() - stopped
                await asyncio.sleep(2)
            last = written[-1]
            await node_b.wait_for(
                lambda: all(node_b.values(m, "speed")[-1:] == [last] for m in MACHINES), 60
            )
            await asyncio.to_thread(broker.start)  # A's queue for its HQ consumer drains
            release = await Hq(other.url).release(order("JO-1"))
            await node_b.wait_for(lambda: "applied" in outcomes(node_b, release["id"]), 30)
            await asyncio.sleep(2)  # HQ's consumer on A reconnects and takes what A kept
    finally:
        other.stop()
    delivered = {m: {*node_a.values(m, "speed"), *node_b.values(m, "speed")} for m in MACHINES}
    lost = {m: [v for v in written if v not in delivered[m]] for m in MACHINES}
    print(
        f"\nfailover: hub link up on the other node {resumed:.2f} s after node A stopped;"
        f" {len(written) * len(MACHINES)} speed changes written under load,"
        f" {sum(map(len, lost.values()))} lost"
    )
    assert lost == {m: [] for m in MACHINES}
    streams = merged_sequences(node_a, node_b)
    gaps = {stream: set(range(1, max(seqs) + 1)) - seqs for stream, seqs in streams.items()}
    assert all(not missing for missing in gaps.values()), gaps
    assert node_a.duplicates_share_ids()
    assert node_b.duplicates_share_ids()
    assert outcomes(node_b, release["id"]) == ["accepted", "applied"]
    assert any(m["type"] == "resync.request" for m in node_b.business), "no session on B"
    assert last_speeds(node_a, node_b) == {m: [last] for m in MACHINES}
