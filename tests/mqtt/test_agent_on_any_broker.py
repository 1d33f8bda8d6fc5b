"""The whole agent, built as in production (``plantsync.app.build_agent``) with default hub
settings, against two broker implementations: Mosquitto (it speaks MQTT 5) and amqtt (MQTT
3.1.1 only, silent to an MQTT 5 CONNECT). Up and down, then a broker restart.

Each test prints its timings (run with ``-s``): connect, and time to resume after a restart.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from plantsync.agent.service import Agent
from plantsync.app import mqtt_hub
from plantsync.config.model import AgentConfig, MqttProtocol, ReconnectConfig
from plantsync.drivers.mqtt import ProtocolChoice
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.hq import Hq, order, outcomes
from tests.e2e.support import HubRecorder, agent_config, eventually, recording, running_agent
from tests.fixtures.amqtt import Amqtt

pytestmark = pytest.mark.slow

MACHINES = ("press-1", "press-2", "lathe-1")
Broker = Mosquitto | Amqtt
EXPECTED = {"mosquitto": MqttProtocol.V5, "amqtt": MqttProtocol.V311}


@pytest.fixture(params=["mosquitto", "amqtt"])
def any_broker(request: pytest.FixtureRequest) -> Broker:
    """Mosquitto or amqtt, started; the test's id says which."""
    fixture = "broker" if request.param == "mosquitto" else "amqtt_broker"
    broker: Broker = request.getfixturevalue(fixture)
    return broker


def kind(broker: Broker) -> str:
    return "amqtt" if isinstance(broker, Amqtt) else "mosquitto"


def config_for(broker: Broker, plant: SimulatedPlant, store: Path) -> AgentConfig:
    """The e2e agent with the defaults that matter here: protocol auto, and the default
    reconnect backoff (1 s doubling to 60 s), so a time to resume is what a plant would see."""
    config = agent_config(store, broker.url, plant.server_config("line-1"))
    assert config.hub.protocol is MqttProtocol.AUTO
    return config.model_copy(update={"reconnect": ReconnectConfig()})


def agent_on(config: AgentConfig, protocols: ProtocolChoice) -> AbstractAsyncContextManager[Agent]:
    """The agent, its MQTT hub factory given the ProtocolChoice that the test reads back
    (``build_agent`` builds the same factory when given none)."""
    return running_agent(config, hub=mqtt_hub(config, protocols))


async def speed_arrives(plant: SimulatedPlant, hub: HubRecorder, value: float) -> None:
    await plant.set_value("press-1", "speed", value)
    await hub.wait_for(lambda: value in hub.values("press-1", "speed"), within=30)


async def test_the_agent_connects_with_defaults_and_delivers_both_ways(
    any_broker: Broker, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    config = config_for(any_broker, opcua_plant, tmp_path / "store.db")
    protocols = ProtocolChoice(config.hub.protocol)
    hq = Hq(any_broker.url)
    async with recording(any_broker.url) as hub:
        started = time.monotonic()
        async with agent_on(config, protocols) as agent:
            await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
            connected = time.monotonic() - started
            await hub.wait_for(lambda: len(hub.streams()) == len(MACHINES), within=30)
            await speed_arrives(opcua_plant, hub, 4711.0)
            release = await hq.release(order("JO-1"))
            await hub.wait_for(lambda: "applied" in outcomes(hub, release["id"]), within=30)
            applied = time.monotonic() - started
            peer = agent.health["hub"].peer  # what the status page shows
            protocol = agent.health["hub"].protocol  # plantsync_link_protocol_info's version
    assert protocols.negotiated(any_broker.url) is EXPECTED[kind(any_broker)]
    assert protocol == EXPECTED[kind(any_broker)].value
    assert peer == f"{any_broker.url} (MQTT {EXPECTED[kind(any_broker)].value})"
    print(
        f"\n{kind(any_broker)}: hub link up over MQTT {EXPECTED[kind(any_broker)].value}"
        f" {connected:.2f} s after start;"
        f" {len(hub.messages)} machine.state, {len(hub.business)} business messages;"
        f" schedule applied and acknowledged {applied:.2f} s after start"
    )
    assert outcomes(hub, release["id"]) == ["accepted", "applied"]
    assert any(message["type"] == "resync.request" for message in hub.business)
    assert hub.duplicates_share_ids()


async def test_the_agent_resumes_after_the_broker_restarts(
    any_broker: Broker, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    config = config_for(any_broker, opcua_plant, tmp_path / "store.db")
    protocols = ProtocolChoice(config.hub.protocol)
    hq = Hq(any_broker.url)
    async with recording(any_broker.url) as hub, agent_on(config, protocols) as agent:
        link = agent.health["hub"]
        await eventually(lambda: link.connects >= 1, within=20)
        await speed_arrives(opcua_plant, hub, 1.0)
        hub.subscribed.clear()
        await asyncio.to_thread(any_broker.stop)
        await asyncio.sleep(1)
        await asyncio.to_thread(any_broker.start)
        back = time.monotonic()
        await eventually(lambda: link.connects >= 2, within=70)
        resumed = time.monotonic() - back
        async with asyncio.timeout(30):
            await hub.subscribed.wait()  # HQ's recorder is back too (amqtt lost its session)
        await speed_arrives(opcua_plant, hub, 2.0)
        release = await hq.release(order("JO-2"))
        await hub.wait_for(lambda: "applied" in outcomes(hub, release["id"]), within=30)
        delivered = time.monotonic() - back
    print(
        f"\n{kind(any_broker)}: broker restart → hub link up again {resumed:.2f} s after the"
        f" broker listens; new value and a schedule round trip done {delivered:.2f} s after"
    )
    assert link.connects == 2
    assert protocols.negotiated(any_broker.url) is EXPECTED[kind(any_broker)]
