"""Everything one chaos run drives, and the tally it keeps.

The runner builds a ``Rig`` (``chaos.run``), the faults act on it (``chaos.faults``), the load
generators feed it, and the report reads the ``Tally`` together with the checker and the MES.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from chaos.agent import AgentApi, AgentProcess, Clock
from chaos.checker import Checker
from chaos.hq import Hq
from chaos.mes import MesServer
from chaos.plant import PlantProcess
from chaos.proxy import Proxy
from plantsync.tools.localbroker import Mosquitto


@dataclass
class Tally:
    """What the harness did and saw, apart from what the checker and the MES record."""

    faults: Counter[str] = field(default_factory=Counter)
    checks: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Fault kind → what each check of its outcome found that is wrong (empty: all held)."""
    observations: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    """Named measurements, e.g. seconds for the agent to notice a half-open link."""
    committed: dict[str, str] = field(default_factory=dict)
    """Confirmation message id (the API's 202) → its confirmation_id."""
    cut: set[str] = field(default_factory=set)
    """confirmation_ids whose POST got no answer (the agent was killed during it)."""
    refused: Counter[str] = field(default_factory=Counter)
    """The agent's answer to a refused confirmation (503 …) → how often."""
    unreachable: int = 0
    """POSTs that found no agent listening (between a kill and the restart)."""
    posted: int = 0
    shed_telemetry: dict[int, float] = field(default_factory=dict)
    """Agent start number → the highest ``plantsync_telemetry_dropped`` it reported."""
    destroyed: set[tuple[int, str, int]] = field(default_factory=set)
    """(epoch, stream, seq) of rows a store still held, undelivered, when the harness corrupted
    it: lost to that fault by definition, so shown apart and not counted as lost."""
    expected: dict[tuple[int, str], int] = field(default_factory=dict)
    """(epoch, stream) → the highest seq the store committed, read from the store file."""
    evicted: dict[int, int] = field(default_factory=dict)
    """Epoch → ``evicted_total`` of that epoch's store (telemetry evicted at the size cap)."""

    def check(self, kind: str, ok: bool, problem: str) -> None:
        """Record the outcome of one check; only failures carry text."""
        self.checks.setdefault(kind, [])
        if not ok:
            self.checks[kind].append(problem)


@dataclass
class Rig:
    """The run's processes, servers and clients."""

    work: Path
    store: Path
    rng: random.Random
    broker: Mosquitto
    proxy: Proxy
    mes: MesServer
    plant: PlantProcess
    agent: AgentProcess
    api: AgentApi
    checker: Checker
    hq: Hq
    clock: Clock | None
    tmpfs: bool
    tally: Tally = field(default_factory=Tally)
    agent_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held by whoever stops or starts the agent, or needs it alive to check something."""
    link_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held by whoever changes the proxy or the broker, or needs the hub link to check."""

    @contextlib.asynccontextmanager
    async def exclusive(self, *, agent: bool = False, link: bool = False) -> AsyncIterator[None]:
        """Hold the agent and/or the link, always in that order (no deadlock between lanes)."""
        async with contextlib.AsyncExitStack() as held:
            if agent:
                await held.enter_async_context(self.agent_lock)
            if link:
                await held.enter_async_context(self.link_lock)
            yield

    async def agent_up(self, within: float = 45.0) -> bool:
        """Wait until the agent answers /healthz (bounded)."""
        try:
            async with asyncio.timeout(within):
                while not await self.api.healthy():  # noqa: ASYNC110 - an HTTP probe
                    await asyncio.sleep(0.1)
        except TimeoutError:
            return False
        return True

    async def hub_linked(self, within: float = 45.0) -> bool:
        """Wait until the agent's status says its hub link is up (bounded)."""
        try:
            async with asyncio.timeout(within):
                while True:
                    status = await self.api.status()
                    if status is not None and status["links"]["hub"]["state"] == "up":
                        return True
                    await asyncio.sleep(0.2)
        except TimeoutError:
            return False


@dataclass(frozen=True)
class StoreContents:
    """What a stopped agent's store holds, as the accounting needs it."""

    last_seqs: dict[str, int]
    """Stream → the highest seq ever committed on it."""
    waiting: set[tuple[str, int]]
    """(stream, seq) of the rows still in the outbox: committed, not yet PUBACKed."""
    evicted: int
    """The store's own count of telemetry rows evicted at the size cap."""


def read_store(path: Path) -> StoreContents:
    """Read a stopped agent's store file, read-only: nothing is written to it."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        streams = connection.execute("SELECT stream, last_seq FROM streams").fetchall()
        waiting = connection.execute("SELECT stream, seq FROM outbox").fetchall()
        ((evicted,),) = connection.execute(
            "SELECT value FROM meta WHERE key = 'evicted_total'"
        ).fetchall()
    finally:
        connection.close()
    return StoreContents(
        {str(stream): int(seq) for stream, seq in streams},
        {(str(stream), int(seq)) for stream, seq in waiting},
        int(evicted),
    )
