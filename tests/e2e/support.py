"""What the end-to-end tests share: an agent config for the fixtures, the agent in-process or as
a process of its own, and an HQ-side recorder that checks ids and sequence numbers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from plantsync.agent.service import Agent
from plantsync.app import build_agent
from plantsync.config.model import (
    AgentConfig,
    ApiConfig,
    HubConfig,
    PolicyConfig,
    ReconnectConfig,
    SiteConfig,
    StoreConfig,
)
from plantsync.config.plant import OpcUaServerConfig
from plantsync.drivers.hub import HubFactory
from plantsync.drivers.mqtt import HubConnection
from plantsync.errors import HubUnavailable

SITE = "plant-test"
FAST_RECONNECT = ReconnectConfig(
    initial_delay=timedelta(milliseconds=100), max_delay=timedelta(seconds=1)
)


def agent_config(store: Path, broker_url: str, server: OpcUaServerConfig) -> AgentConfig:
    """A config for one simulated plant and one broker, reconnecting quickly."""
    return AgentConfig(
        site=SiteConfig(id=SITE),
        hub=HubConfig(url=broker_url, keepalive=timedelta(seconds=5)),
        store=StoreConfig(path=store),
        opcua=[server],
        api=ApiConfig(port=0),
        policy=PolicyConfig(snapshot_interval=timedelta(0)),
        reconnect=FAST_RECONNECT,
        shutdown_timeout=timedelta(seconds=5),
    )


def config_toml(store: Path, broker_url: str, server: OpcUaServerConfig) -> str:
    """The same config as a TOML file, for an agent run as a separate process."""
    lines = [
        f'[site]\nid = "{SITE}"\n',
        f'[hub]\nurl = "{broker_url}"\nkeepalive = "5s"\n',
        f'[store]\npath = "{store}"\n',
        "[api]\nport = 0\n",
        '[policy]\nsnapshot_interval = "0s"\n',
        '[reconnect]\ninitial_delay = "100ms"\nmax_delay = "1s"\n',
        f'[[opcua]]\nname = "{server.name}"\nendpoint = "{server.endpoint}"\n',
    ]
    for machine in server.machines:
        lines.append(f'[[opcua.machines]]\nid = "{machine.id}"\n')
        lines.extend(
            f'[[opcua.machines.tags]]\nname = "{tag.name}"\nnode_id = "{tag.node_id}"\n'
            for tag in machine.tags
        )
    return "\n".join(lines)


@contextlib.asynccontextmanager
async def running_agent(
    config: AgentConfig, *, hub: HubFactory | None = None
) -> AsyncIterator[Agent]:
    """The agent in this process, as ``build_agent`` makes it (``hub`` replaces its MQTT
    transport); stopped (cleanly, bounded) when the block ends. An agent that ended on its own
    before that fails the test: no counterpart going away may end it."""
    agent = build_agent(config, config_hash="e2e", hub=hub)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop), name="agent")
    try:
        yield agent
        assert not task.done(), "the agent ended on its own"
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task


def start_agent_process(config_file: Path, log_file: Path) -> subprocess.Popen[bytes]:
    """``plantsync run`` as a child process, so a test can SIGKILL it."""
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "plantsync", "run", "--config", str(config_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


@dataclass
class HubRecorder:
    """An HQ consumer: a persistent session on the site's topics that survives broker
    restarts, recording every message the site sends up."""

    broker_url: str
    client_id: str = "hq-recorder"
    messages: list[dict[str, Any]] = field(default_factory=list)
    """machine.state messages."""
    business: list[dict[str, Any]] = field(default_factory=list)
    """Every other message: acks, order status, confirmations, resync requests."""
    arrivals: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    """Every message with its arrival time (``time.monotonic``), in arrival order."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        hub = HubConfig(url=self.broker_url, keepalive=timedelta(seconds=5))
        while True:
            try:
                async with HubConnection(hub, client_id=self.client_id) as connection:
                    await connection.subscribe([(f"plantsync/v1/{SITE}/up/#", 1)])
                    self.subscribed.set()
                    async for message in connection.messages():
                        document = json.loads(message.payload)
                        is_state = document["type"] == "machine.state"
                        (self.messages if is_state else self.business).append(document)
                        self.arrivals.append((time.monotonic(), document))
                        self.changed.set()
            except HubUnavailable:
                await asyncio.sleep(0.2)

    def streams(self) -> dict[str, list[int]]:
        """Sequence numbers received per stream, duplicates removed, in seq order: what the
        contract asks of consumers, since after an outage live messages arrive before the
        backlog (``historical``) of their stream."""
        seen: set[str] = set()
        result: dict[str, list[int]] = defaultdict(list)
        for message in self.messages:
            if message["id"] not in seen:
                seen.add(message["id"])
                result[message["stream"]].append(message["seq"])
        return {stream: sorted(sequences) for stream, sequences in result.items()}

    def duplicates_share_ids(self) -> bool:
        """Every (stream, seq) received twice came with the same message id."""
        ids: dict[tuple[str, int], str] = {}
        for message in self.messages:
            key = (message["stream"], message["seq"])
            if ids.setdefault(key, message["id"]) != message["id"]:
                return False
        return True

    def values(self, machine: str, tag: str) -> list[Any]:
        """Every value of one tag in seq order (duplicates removed), as a consumer that
        orders by stream + seq sees them."""
        seen: set[str] = set()
        messages = []
        for message in self.messages:
            if message["id"] in seen or message["payload"]["machine_id"] != machine:
                continue
            seen.add(message["id"])
            messages.append(message)
        messages.sort(key=lambda message: int(message["seq"]))
        return [v["value"] for m in messages for v in m["payload"]["values"] if v["tag"] == tag]

    async def wait_for(self, condition: Callable[[], bool], within: float) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def recording(broker_url: str, client_id: str = "hq-recorder") -> AsyncIterator[HubRecorder]:
    """A ``HubRecorder`` running (subscribed) for the block."""
    recorder = HubRecorder(broker_url, client_id=client_id)
    task = asyncio.create_task(recorder.run(), name="recorder")
    try:
        async with asyncio.timeout(10):
            await recorder.subscribed.wait()
        yield recorder
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def gapless(sequences: list[int]) -> bool:
    """1, 2, 3 … in order, with nothing missing."""
    return sequences == list(range(1, len(sequences) + 1))


async def eventually(condition: Callable[[], bool], within: float) -> None:
    """Poll ``condition`` until it holds; for state that has no event to wait on."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - link health is polled by design
            await asyncio.sleep(0.05)
