"""The simulated MES (``plantsync.sim.mes``) on a loopback port, and a runner over a real store."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from plantsync.agent.polling import Poller, PollRunner
from plantsync.agent.sequencer import Sequencer
from plantsync.agent.supervisor import LinkHealth
from plantsync.app import poll_endpoint
from plantsync.buffer.store import Store
from plantsync.config.plant import PollEndpointConfig
from plantsync.contracts import Topics
from plantsync.sim.mes import SimulatedMes
from plantsync.sim.mes_endpoints import poll_endpoints


@pytest.fixture
async def mes() -> AsyncIterator[SimulatedMes]:
    async with SimulatedMes() as simulated:
        yield simulated


def endpoint(mes: SimulatedMes, name: str, **changes: Any) -> PollEndpointConfig:
    """The sim's endpoint ``name`` (``sim/mes_endpoints.py``), with ``changes`` applied."""
    (config,) = [one for one in poll_endpoints(mes.url) if one.name == name]
    return PollEndpointConfig.model_validate({**config.model_dump(), **changes})


@contextlib.asynccontextmanager
async def runner(
    path: Path, config: PollEndpointConfig, max_size_bytes: int = 64 * 1024**2
) -> AsyncIterator[PollRunner]:
    """A runner for ``config`` over the store at ``path``, as the agent builds it."""
    store = await Store.open(path, max_size_bytes=max_size_bytes)
    try:
        yield PollRunner(
            poll_endpoint(config),
            cursors=store.cursors,
            dead_letters=store.inbox,
            topics=Topics("plantsync/v1", "plant-01"),
            sequencer=Sequencer(await store.outbox.last_sequences()),
            outbox_changed=asyncio.Event(),
            health=LinkHealth(f"mes-poll:{config.name}"),
        )
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def polled(
    path: Path, config: PollEndpointConfig
) -> AsyncIterator[tuple[PollRunner, Poller]]:
    """A runner for ``config`` over the store at ``path``, and its connected source."""
    async with runner(path, config) as poll, poll.endpoint.connect() as source:
        yield poll, source


async def outbox_messages(path: Path) -> list[dict[str, Any]]:
    """Every message waiting in the outbox of the store at ``path``, in line order."""
    async with await Store.open(path, max_size_bytes=64 * 1024**2) as store:
        claimed = await store.outbox.begin(100_000)
    return [json.loads(item.record.payload) for item in claimed]


async def dead_letters(path: Path) -> list[tuple[str, str, str, bytes]]:
    """(topic, reason code, reason, payload) of every dead letter, oldest first."""
    async with await Store.open(path, max_size_bytes=64 * 1024**2) as store:
        letters = await store.inbox.dead_letters()
    return [(d.topic, d.reason_code, d.reason, d.payload) for d in reversed(letters)]
