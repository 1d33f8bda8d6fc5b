"""The agent built by the composition root with a fake ``Hub``: proof that the hub seam is real
(nothing in the core names MQTT), and that a plant system going away never ends the agent.

The fake stands at the seam only; the OPC UA server and the Job Control server are real
(asyncua, the simulated plant), and so is the SQLite store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from plantsync.agent.service import Agent
from plantsync.agent.supervisor import LinkHealth, LinkState
from plantsync.config.model import (
    AgentConfig,
    ApiConfig,
    HubConfig,
    PolicyConfig,
    SiteConfig,
    StoreConfig,
)
from plantsync.config.plant import JobControlConfig, OpcUaServerConfig
from plantsync.drivers.hub import Hub, InboundMessage, Outgoing, Will
from plantsync.errors import HubUnavailable
from plantsync.sim.plant import SimulatedPlant
from tests.api.support import down, order
from tests.e2e.support import FAST_RECONNECT, eventually, running_agent

SITE = "plant-fake"


class FakeHub:
    """An in-memory hub session: acknowledges every message at once, delivers what the test
    puts in ``inbound``, and records what the agent publishes and acknowledges."""

    def __init__(self, broker: FakeBroker, will: Will) -> None:
        self._broker, self.will = broker, will
        self._acknowledged: list[int] = []
        self._ready = asyncio.Event()
        self._closed = asyncio.Event()

    @property
    def peer(self) -> str:
        return "fake hub (in memory)"

    @property
    def protocol_version(self) -> str:
        return "in memory"

    @property
    def peer_certificate(self) -> None:
        return None  # no TLS in memory

    @property
    def session_present(self) -> bool:
        return True  # the fake broker keeps the session: no resync request

    async def __aenter__(self) -> Self:
        self._broker.sessions += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closed.set()
        self._ready.set()

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> None:
        self._broker.subscriptions.extend(topic for topic, _ in filters)

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        self._broker.published.append((topic, payload))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def send(self, messages: Iterable[Outgoing], *, backfill: bool = False) -> None:
        for key, topic, payload in messages:
            self._broker.published.append((topic, payload))
            self._acknowledged.append(key)
        self._ready.set()

    def acknowledged(self) -> list[int]:
        keys, self._acknowledged = self._acknowledged, []
        self._ready.clear()
        return keys

    @property
    def acknowledgement_ready(self) -> asyncio.Event:
        return self._ready

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def messages(self) -> AsyncIterator[InboundMessage]:
        while not self._closed.is_set():
            yield await self._broker.inbound.get()
        raise HubUnavailable("fake hub closed")

    def ack(self, message: InboundMessage) -> None:
        self._broker.acked.append(message.mid)


class FakeBroker:
    """What the fake hub sessions share, as a broker would across reconnects."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.subscriptions: list[str] = []
        self.inbound: asyncio.Queue[InboundMessage] = asyncio.Queue()
        self.acked: list[int] = []
        self.sessions = 0

    def connect(self, will: Will) -> Hub:
        return FakeHub(self, will)

    def messages(self, topic_suffix: str) -> list[dict[str, Any]]:
        return [
            json.loads(payload) for topic, payload in self.published if topic.endswith(topic_suffix)
        ]


def _config(
    store: Path,
    opcua: list[OpcUaServerConfig] | None = None,
    jobcontrol: JobControlConfig | None = None,
) -> AgentConfig:
    return AgentConfig(
        site=SiteConfig(id=SITE),
        # Never dialled: the fake hub replaces the transport.
        hub=HubConfig(url="mqtt://127.0.0.1:9"),
        store=StoreConfig(path=store),
        opcua=opcua or [],
        jobcontrol=jobcontrol,
        api=ApiConfig(port=0),
        policy=PolicyConfig(snapshot_interval=timedelta(0)),
        reconnect=FAST_RECONNECT,
        shutdown_timeout=timedelta(seconds=5),
    )


def _running(
    config: AgentConfig, broker: FakeBroker
) -> contextlib.AbstractAsyncContextManager[Agent]:
    return running_agent(config, hub=broker.connect)


async def test_readings_reach_a_fake_hub_through_the_pipeline_and_the_store(
    tmp_path: Path, opcua_plant: SimulatedPlant
) -> None:
    broker = FakeBroker()
    config = _config(tmp_path / "store.db", opcua=[opcua_plant.server_config("line-1")])
    async with _running(config, broker) as agent:
        await eventually(lambda: bool(broker.messages("/state")), within=20)
        assert agent.health["hub"].state is LinkState.UP
        assert agent.health["hub"].peer == "fake hub (in memory)"
        assert broker.subscriptions == [
            f"plantsync/v1/{SITE}/down/schedule",
            f"plantsync/v1/{SITE}/down/alarm",
        ]
        [first, *_] = broker.messages("/state")
        assert first["type"] == "machine.state"
        assert first["source"] == "opcua:line-1"
        assert first["seq"] == 1
        assert agent.store is not None
        # Acknowledged by the fake hub, so the outbox lets the rows go.
        await eventually(lambda: agent.uplink is not None and agent.uplink.counters.acked >= 1, 10)
    online = [
        json.loads(payload) for topic, payload in broker.published if topic.endswith("/status")
    ]
    assert [status["state"] for status in online] == ["online", "offline"]


async def test_a_schedule_from_a_fake_hub_is_applied_acknowledged_and_acked_to_the_broker(
    tmp_path: Path,
) -> None:
    broker = FakeBroker()
    topic = f"plantsync/v1/{SITE}/down/schedule"
    _, release = down("schedule.release", 1, order("JO-1"), site=SITE)
    await broker.inbound.put(InboundMessage(topic, release, 1, False, mid=7))
    async with _running(_config(tmp_path / "store.db"), broker) as agent:
        await eventually(
            lambda: any(ack["payload"]["outcome"] == "applied" for ack in broker.messages("/ack")),
            within=20,
        )
        assert broker.acked == [7]  # the MQTT ack came after the inbox commit
        assert agent.store is not None
        assert [order.order_id for order in await agent.store.inbox.schedule(None)] == ["JO-1"]


@contextlib.asynccontextmanager
async def _on_job_control(
    tmp_path: Path, plant: SimulatedPlant, broker: FakeBroker
) -> AsyncIterator[LinkHealth]:
    """The agent with its schedule going to ``plant``'s Job Control server; the plant link's
    health, once it is up."""
    jobcontrol = plant.jobcontrol_config(publishing_interval="50ms")
    async with _running(_config(tmp_path / "store.db", jobcontrol=jobcontrol), broker) as agent:
        link = agent.health["plant"]
        await eventually(lambda: link.state is LinkState.UP, within=20)
        yield link


async def test_a_job_control_server_that_goes_away_is_reconnected_and_never_ends_the_agent(
    tmp_path: Path, jobcontrol_plant: SimulatedPlant
) -> None:
    async with _on_job_control(tmp_path, jobcontrol_plant, FakeBroker()) as plant:
        for restart in range(1, 3):
            await jobcontrol_plant.stop()
            await eventually(lambda: plant.state is LinkState.BACKOFF, within=20)
            await jobcontrol_plant.start()
            await eventually(functools.partial(_connected_more_than, plant, restart), within=30)
        assert plant.state is LinkState.UP


def _connected_more_than(link: LinkHealth, times: int) -> bool:
    return link.connects > times


async def test_a_schedule_sent_while_the_plant_system_is_down_is_pending_then_applied_once(
    tmp_path: Path, jobcontrol_plant: SimulatedPlant
) -> None:
    """HQ hears "pending" while the Job Control server is away, not only when it returns."""
    broker = FakeBroker()
    async with _on_job_control(tmp_path, jobcontrol_plant, broker) as plant:
        await jobcontrol_plant.stop()
        await eventually(lambda: plant.state is LinkState.BACKOFF, within=20)

        message_id, release = down("schedule.release", 1, order("JO-9"), site=SITE)
        topic = f"plantsync/v1/{SITE}/down/schedule"
        await broker.inbound.put(InboundMessage(topic, release, 1, False, mid=9))

        def outcomes() -> list[str]:
            return [
                ack["payload"]["outcome"]
                for ack in broker.messages("/ack")
                if ack["payload"]["original_id"] == message_id
            ]

        await eventually(lambda: "pending" in outcomes(), within=20)
        assert "applied" not in outcomes()
        await jobcontrol_plant.start()
        await eventually(lambda: "applied" in outcomes(), within=30)
    assert outcomes() == ["accepted", "pending", "applied"]
    [pending] = [
        ack["payload"] for ack in broker.messages("/ack") if ack["payload"]["outcome"] == "pending"
    ]
    assert pending["reason_code"] == "plant-unavailable"
