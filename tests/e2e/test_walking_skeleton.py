"""End to end on real components: an asyncua server → the agent → a real Mosquitto → an HQ
consumer. Faults are injected by stopping and restarting the real servers and the agent."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from plantsync.buffer.sqlite import SqliteOutbox
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.support import (
    HubRecorder,
    agent_config,
    config_toml,
    eventually,
    gapless,
    recording,
    running_agent,
    start_agent_process,
)

pytestmark = pytest.mark.slow

MACHINES = ("press-1", "press-2", "lathe-1")


async def _all_machines_seen(hub: HubRecorder) -> None:
    await hub.wait_for(lambda: len(hub.streams()) == len(MACHINES), within=30)


@contextlib.asynccontextmanager
async def steady_load(plant: SimulatedPlant, per_second: float) -> AsyncIterator[list[float]]:
    """Change every machine's speed ``per_second`` times a second; yields the values written."""
    written: list[float] = []

    async def write() -> None:
        for step in range(1, 100_000):  # bounded: at most ~30 min at 50/s
            for machine in MACHINES:
                await plant.set_value(machine, "speed", float(step))
            written.append(float(step))
            await asyncio.sleep(1 / per_second)

    task = asyncio.create_task(write(), name="steady-load")
    try:
        yield written
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_every_value_change_reaches_the_hub_in_order_without_gaps(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    config = agent_config(tmp_path / "store.db", broker.url, opcua_plant.server_config("line-1"))
    async with recording(broker.url) as hub, running_agent(config):
        await _all_machines_seen(hub)
        # 50 changes/s per tag: below what a 10-deep queue holds per 100 ms publish.
        for step in range(1, 101):
            for machine in MACHINES:
                await opcua_plant.set_value(machine, "speed", float(step))
            await asyncio.sleep(0.02)
        await hub.wait_for(
            lambda: all(hub.values(m, "speed")[-1:] == [100.0] for m in MACHINES), within=30
        )
    for machine in MACHINES:
        assert hub.values(machine, "speed")[-100:] == [float(step) for step in range(1, 101)]
    assert all(gapless(sequences) for sequences in hub.streams().values()), hub.streams()


async def test_a_ten_second_broker_outage_under_load_loses_nothing(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    config = agent_config(tmp_path / "store.db", broker.url, opcua_plant.server_config("line-1"))
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await _all_machines_seen(hub)
        async with steady_load(opcua_plant, per_second=50) as written:
            await asyncio.sleep(2)
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(10)
            await asyncio.to_thread(broker.start)
            await asyncio.sleep(2)
        # Live first: the newest value may arrive before the backlog; wait for all of it.
        await hub.wait_for(
            lambda: all(set(written) <= set(hub.values(m, "speed")) for m in MACHINES), within=60
        )
        assert agent.health["hub"].connects >= 2, "the agent reconnected to the restarted broker"
    for machine in MACHINES:
        received = [value for value in hub.values(machine, "speed") if value in written]
        assert received == written, f"{machine}: every speed written was delivered, in seq order"
    assert all(gapless(sequences) for sequences in hub.streams().values()), hub.streams()
    assert hub.duplicates_share_ids()


async def test_a_sigkilled_agent_loses_nothing_it_committed(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    config_file = tmp_path / "agent.toml"
    config_file.write_text(config_toml(store, broker.url, opcua_plant.server_config("line-1")))
    log = tmp_path / "agent.log"
    async with recording(broker.url) as hub, steady_load(opcua_plant, per_second=50):
        agent = start_agent_process(config_file, log)
        await _all_machines_seen(hub)
        # A backlog the hub has not acknowledged, then a kill in the middle of it.
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(2)
        agent.send_signal(signal.SIGKILL)
        await asyncio.to_thread(agent.wait, 10)
        committed, backlog = await _committed_sequences(store)
        await asyncio.to_thread(broker.start)
        agent = start_agent_process(config_file, log)
        await hub.wait_for(lambda: _beyond(hub, committed), within=60)
        agent.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(agent.wait, 30)
    assert exit_code == 0, log.read_text()
    assert backlog > 0, "the agent was killed with undelivered messages in its outbox"
    for stream, sequences in hub.streams().items():
        assert gapless(sequences), f"{stream}: {sequences}"
    assert hub.duplicates_share_ids()


async def _committed_sequences(store: Path) -> tuple[dict[str, int], int]:
    """The last machine.state sequence committed per stream, and how many rows wait."""
    outbox = await SqliteOutbox.open(store, max_size_bytes=1 << 30)
    try:
        sequences = await outbox.last_sequences()
        machines = {
            stream: seq for stream, seq in sequences.items() if stream.startswith("machine/")
        }
        return machines, (await outbox.stats()).depth
    finally:
        await outbox.close()


def _beyond(hub: HubRecorder, committed: dict[str, int]) -> bool:
    """Every stream was received past what the killed agent had committed."""
    streams = hub.streams()
    return all(streams.get(stream, [0])[-1] > last for stream, last in committed.items())


async def test_the_agent_resubscribes_after_the_opcua_server_restarts(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    server = opcua_plant.server_config("line-1", stall_timeout=timedelta(seconds=3))
    config = agent_config(tmp_path / "store.db", broker.url, server)
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await _all_machines_seen(hub)
        await opcua_plant.restart()
        link = agent.health["opcua:line-1"]
        await eventually(lambda: link.connects >= 2, within=30)
        await opcua_plant.set_value("press-1", "speed", 4242.0)
        await hub.wait_for(lambda: 4242.0 in hub.values("press-1", "speed"), within=20)
    assert all(gapless(sequences) for sequences in hub.streams().values())


@pytest.mark.parametrize("command", [["check-config"], ["run", "--config"]])
def test_an_invalid_config_exits_2_naming_the_file_and_key(
    command: list[str], tmp_path: Path
) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text('[site]\nid = "p1"\n[hub]\nurl = "mqtt://127.0.0.1:1883"\nkeepalive = "soon"\n')
    result = subprocess.run(
        [sys.executable, "-m", "plantsync", *command, str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "hub.keepalive" in result.stderr


def test_an_api_port_in_use_exits_2_naming_the_api(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "agent.toml"
        config.write_text(
            f'[site]\nid = "p1"\n[hub]\nurl = "mqtt://127.0.0.1:1"\n'
            f'[store]\npath = "{tmp_path / "store.db"}"\n[api]\nport = {port}\n'
        )
        result = subprocess.run(
            [sys.executable, "-m", "plantsync", "run", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    assert f"api: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
