"""Gaps that outlive a session: durable across an agent restart, resumed after a second drop,
opened by the server's Overflow bit. An asyncua server historizing into SQLite, the agent (its
store on disk), a real Mosquitto and an HQ recorder."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from asyncua import ua
from asyncua.server.history_sql import HistorySQLite

from plantsync.agent.supervisor import LinkState
from plantsync.config.model import AgentConfig
from plantsync.config.plant import MachineConfig, TagConfig
from plantsync.drivers import opcua_history
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.support import (
    HubRecorder,
    agent_config,
    config_toml,
    eventually,
    recording,
    running_agent,
    start_agent_process,
)
from tests.opcua.test_backfill import Historian, gaps, historian, proxied, speeds

LINK = "opcua:line-1"
OVERFLOW = 0x0480  # InfoType DataValue + Overflow (OPC UA Part 4, 7.39)


class Clock:
    """Distinct, increasing source times for the values a test writes."""

    def __init__(self) -> None:
        self._at = datetime.now(UTC)

    def next(self) -> datetime:
        self._at = max(self._at + timedelta(milliseconds=1), datetime.now(UTC))
        return self._at


def data(value: int, moment: datetime, status: int = 0) -> ua.DataValue:
    at = cast(ua.DateTime, moment)
    return ua.DataValue(
        ua.Variant(float(value), ua.VariantType.Double),
        StatusCode=ua.StatusCode(ua.UInt32(status)),
        SourceTimestamp=at,
        ServerTimestamp=at,
    )


async def write(oven: Historian, values: range, clock: Clock, pause: float = 0.01) -> None:
    """Each value to both tags (``kept`` historized, ``lost`` not), ``pause`` apart."""
    for value in values:
        moment = clock.next()
        for node in (oven.kept, oven.lost):
            await node.write_value(data(value, moment))
        await asyncio.sleep(pause)


def config(
    tmp_path: Path, broker: Mosquitto, plant: SimulatedPlant, oven: Historian, port: int
) -> AgentConfig:
    machines = [
        MachineConfig(id=machine, tags=[TagConfig(name="speed", node_id=node.nodeid.to_string())])
        for machine, node in (("press-1", oven.kept), ("press-2", oven.lost))
    ]
    server = plant.server_config(
        "line-1",
        endpoint=f"opc.tcp://127.0.0.1:{port}/plantsync/",
        machines=machines,
        backfill="history",
        backfill_rate=200,
    )
    return agent_config(tmp_path / "store.db", broker.url, server)


def exactly_once(hub: HubRecorder, last: int) -> bool:
    return sorted(value for value, _ in speeds(hub, "press-1")) == [
        float(n) for n in range(last + 1)
    ]


def covered(hub: HubRecorder, last: int) -> bool:
    return {value for value, _ in speeds(hub, "press-1")} >= {float(n) for n in range(last + 1)}


def historical(hub: HubRecorder) -> set[float]:
    return {value for value, flag in speeds(hub, "press-1") if flag}


async def test_values_changed_while_the_agent_was_stopped_reach_hq_once_after_its_restart(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    oven, clock = await historian(opcua_plant, tmp_path / "history.db"), Clock()
    settings = config(tmp_path, broker, opcua_plant, oven, opcua_plant.port)
    async with recording(broker.url) as hub:
        async with running_agent(settings) as agent:
            await eventually(lambda: agent.health[LINK].state is LinkState.UP, 20)
            await write(oven, range(1, 11), clock)
            await hub.wait_for(lambda: (10.0, False) in speeds(hub, "press-1"), within=20)
        # agent stopped: 5 s of changes
        await write(oven, range(11, 61), clock, pause=0.1)
        async with running_agent(settings) as agent:
            await eventually(lambda: agent.health[LINK].state is LinkState.UP, 20)
            await write(oven, range(61, 71), clock)
            await hub.wait_for(lambda: covered(hub, 70), within=30)
            await hub.wait_for(lambda: bool(gaps(hub)), within=20)
            await asyncio.sleep(1)  # a duplicate would arrive now

    assert exactly_once(hub, 70)
    # 60 is the first value of the new session (live, or backlog if before the hub's connect)
    assert historical(hub) >= {float(n) for n in range(11, 60)}
    [gap] = gaps(hub)
    assert (gap.payload.machine_id, gap.payload.reason) == ("press-2", "no-history")
    assert gap.payload.start < gap.payload.end


@pytest.mark.slow
async def test_values_changed_while_the_agent_was_killed_reach_hq_once_after_its_restart(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    oven, clock = await historian(opcua_plant, tmp_path / "history.db"), Clock()
    settings = config(tmp_path, broker, opcua_plant, oven, opcua_plant.port)
    config_file, log = tmp_path / "agent.toml", tmp_path / "agent.log"
    text = config_toml(settings.store.path, broker.url, settings.opcua[0])
    marker = f'endpoint = "{settings.opcua[0].endpoint}"\n'
    config_file.write_text(text.replace(marker, marker + 'backfill = "history"\n'))
    async with recording(broker.url) as hub:
        agent = start_agent_process(config_file, log)
        try:
            # its subscription's initial value first: nothing before a tag's first value is
            # backfilled (no mark yet)
            await hub.wait_for(lambda: 0.0 in {v for v, _ in speeds(hub, "press-1")}, within=60)
            await write(oven, range(1, 11), clock, pause=0.05)
            await hub.wait_for(lambda: 10.0 in {v for v, _ in speeds(hub, "press-1")}, within=30)
            await write(oven, range(11, 21), clock, pause=0.005)
            agent.send_signal(signal.SIGKILL)  # while it commits and sends
            await asyncio.to_thread(agent.wait, 10)
            await write(oven, range(21, 61), clock, pause=0.1)
            agent = start_agent_process(config_file, log)
            await write(oven, range(61, 71), clock, pause=0.2)
            try:
                await hub.wait_for(lambda: covered(hub, 70), within=40)
            except TimeoutError:
                got = {v for v, _ in speeds(hub, "press-1")}
                missing = sorted(set(map(float, range(71))) - got)
                raise AssertionError(f"missing {missing}\n{log.read_text()[-4000:]}") from None
            await asyncio.sleep(1)
        finally:
            agent.send_signal(signal.SIGTERM)
            await asyncio.to_thread(agent.wait, 30)

    assert exactly_once(hub, 70), log.read_text()[-3000:]
    assert historical(hub) >= {float(n) for n in range(21, 60)}


async def test_a_backfill_cut_by_a_second_drop_goes_on_after_the_reconnect_exactly_once(
    broker: Mosquitto,
    opcua_plant: SimulatedPlant,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(opcua_history, "VALUES_PER_NODE", 20)  # many pages: time to cut one
    oven, clock = await historian(opcua_plant, tmp_path / "history.db"), Clock()
    async with proxied(opcua_plant) as proxy, recording(broker.url) as hub:
        settings = config(tmp_path, broker, opcua_plant, oven, proxy.port)
        async with running_agent(settings) as agent:
            await eventually(lambda: agent.health[LINK].state is LinkState.UP, 20)
            await write(oven, range(1, 11), clock)
            await hub.wait_for(lambda: (10.0, False) in speeds(hub, "press-1"), within=20)

            proxy.refuse()
            await eventually(lambda: agent.health[LINK].state is not LinkState.UP, 20)
            await write(oven, range(11, 611), clock, pause=0.001)  # 3 s of backfill at 200/s
            proxy.heal()
            await hub.wait_for(lambda: len(historical(hub)) >= 100, within=30)

            proxy.refuse()  # while the backfill reads
            await eventually(lambda: agent.health[LINK].state is not LinkState.UP, 20)
            cut = len(historical(hub))
            await write(oven, range(611, 621), clock)
            proxy.heal()
            await eventually(lambda: agent.health[LINK].state is LinkState.UP, 30)
            await write(oven, range(621, 631), clock)
            await hub.wait_for(lambda: covered(hub, 630), within=30)
            await asyncio.sleep(1)

    assert cut < 599, "the second drop came after the backfill was done"
    assert exactly_once(hub, 630)
    assert historical(hub) >= {float(n) for n in range(11, 610)} | set(map(float, range(611, 620)))


async def test_a_value_the_server_flags_overflow_opens_a_gap_the_backfill_fills(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    database = tmp_path / "history.db"
    oven, clock = await historian(opcua_plant, database), Clock()
    storage = opcua_plant.server.iserver.history_manager.storage
    assert isinstance(storage, HistorySQLite)
    settings = config(tmp_path, broker, opcua_plant, oven, opcua_plant.port)
    async with recording(broker.url) as hub, running_agent(settings) as agent:
        await eventually(lambda: agent.health[LINK].state is LinkState.UP, 20)
        await write(oven, range(1, 11), clock)
        await hub.wait_for(lambda: (10.0, False) in speeds(hub, "press-1"), within=20)
        # 11 … 20 reach the server's history but not the subscription (its queue dropped
        # them); 21 arrives flagged Overflow, as a server reports such a loss
        for value in range(11, 21):
            await storage.save_node_value(oven.kept.nodeid, data(value, clock.next()))
        await oven.kept.write_value(data(21, clock.next(), OVERFLOW))
        await write(oven, range(22, 26), clock)
        await hub.wait_for(lambda: covered(hub, 25), within=20)
        await asyncio.sleep(1)

    assert exactly_once(hub, 25)
    assert historical(hub) >= {float(n) for n in range(11, 21)}
    assert not historical(hub) & {21.0, 22.0}
    assert agent.health[LINK].counters.get("overflows") == 1
    assert not gaps(hub)  # press-2 lost nothing: no report
